"""/openapi.json is good enough to generate a client from (issue 16): a
standard generator (openapi-python-client) builds one from the running
server's document, and it does one upload → read → compare round trip. The
upload's multipart body is described (the route streams it by hand), a
bearer scheme is declared (so /docs has "Authorize"), errors are problem
documents, and a dataset may be named by its name."""

from __future__ import annotations

import importlib
import io
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import login


def test_a_generated_client_uploads_reads_and_compares(
    api_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = httpx.get(f"{api_url}/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    upload = spec["paths"]["/api/v1/datasets/{dataset_id}/refs/{branch}/uploads"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["properties"]["file"]["format"] == "binary"
    ops = [op["operationId"] for item in spec["paths"].values() for op in item.values()]
    assert len(ops) == len(set(ops))
    (tmp_path / "openapi.json").write_text(httpx.get(f"{api_url}/openapi.json").text)
    tool = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    assert tool, "openapi-python-client is a dev dependency"
    out = subprocess.run(
        [tool, "generate", "--path", "openapi.json", "--output-path", "dsa_api", "--meta", "none"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    monkeypatch.syspath_prepend(str(tmp_path))
    api: Any = importlib.import_module("dsa_api")
    m = importlib.import_module("dsa_api.models")
    create = importlib.import_module("dsa_api.api.datasets.datasets_create")
    upload_op = importlib.import_module("dsa_api.api.imports.imports_upload")
    get_job = importlib.import_module("dsa_api.api.jobs.jobs_get_job")
    data = importlib.import_module("dsa_api.api.reading.reading_data")
    compare = importlib.import_module("dsa_api.api.compare.compare_compare")
    types = importlib.import_module("dsa_api.types")

    with httpx.Client(base_url=api_url) as h:
        token = login(h)["Authorization"].split(" ", 1)[1]
    client = api.AuthenticatedClient(base_url=api_url, token=token)
    name = f"gen-{uuid.uuid4().hex[:8]}"
    made = create.sync(client=client, body=m.DatasetCreate(name=name))
    assert made.name == name
    commits = []
    for body in (b"id,v\n1,a\n2,b\n", b"id,v\n1,a\n2,c\n"):
        file = types.File(payload=io.BytesIO(body), file_name="t.csv", mime_type="text/csv")
        accepted = upload_op.sync(name, "main", client=client, body=m.ImportsUploadBody(file=file))
        assert isinstance(accepted, m.UploadAccepted), accepted
        for _ in range(600):
            job = get_job.sync(accepted.job_id, client=client)
            if job.state in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.1)
        assert job.state == "succeeded", job
        commits.append(job.commit_id)
    page = data.sync(name, "main", client=client)
    assert page.rows == [[1, "a"], [2, "c"]]
    diff = compare.sync(name, f"{commits[0]}...main", client=client)
    assert diff.summary.modified == 1
    missing = data.sync(name, "main~5", client=client)
    assert isinstance(missing, m.Problem) and missing.status == 404

"""``dsa fsck`` (issue 14) on the session's installation: a dataset with a
re-upload checks clean, shallow and deep; then each kind of damage, made to
this dataset's own objects and undone afterwards, is found and named: a
missing manifest, a damaged commit, a chunk whose bytes no longer parse,
and a chunk whose rows were changed under their stored hashes (only a deep
check re-hashes rows). The command exits 1 and prints JSON lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from core.chunks import chunk_key, parquet_writer
from core.objects import get_commit, get_manifest
from core.storage import LocalStore, get_store
from features.integrity import service
from tests.conftest import ROOT, import_csv, make_dataset

ROWS = 3000


@pytest.fixture(scope="module")
def dataset(client: Any, admin: dict[str, str], worker: Any) -> dict[str, Any]:
    ds = make_dataset(client, admin)
    first = b"id,name,score\n" + b"".join(b"%d,n%d,%d.5\n" % (i, i, i % 97) for i in range(ROWS))
    second = first.replace(b"\n17,n17,", b"\n17,edited,").replace(b"\n2500,n2500,", b"\n2500,x,")
    jobs = [import_csv(client, admin, ds["id"], body) for body in (first, second)]
    assert all(j["state"] == "succeeded" for j in jobs), jobs
    ds["commits"] = [j["commit_id"] for j in jobs]
    return ds


def _fsck(name: str, deep: bool = False) -> tuple[service.Report, list[service.Problem]]:
    found: list[service.Problem] = []
    report = service.fsck(deep=deep, dataset=name, emit=found.append)
    return report, found


@contextmanager
def _damaged(key: str, change: Any) -> Iterator[Path]:
    store = get_store()
    assert isinstance(store, LocalStore)
    path = store._path(key)  # noqa: SLF001
    saved = path.read_bytes()
    try:
        change(path)
        yield path
    finally:
        path.write_bytes(saved)


def test_a_whole_dataset_checks_clean(dataset: dict[str, Any]) -> None:
    report, found = _fsck(dataset["name"])
    assert found == [] and report.problems == 0
    # 2 commits, their schema(s) and manifests, and the chunks
    assert report.objects_checked >= 6 and report.bytes_read > 0
    deep, found = _fsck(dataset["name"], deep=True)
    assert found == [] and deep.objects_checked == report.objects_checked


def test_a_missing_manifest_is_named(dataset: dict[str, Any]) -> None:
    commit = get_commit(get_store(), dataset["commits"][1])
    manifest = commit.tables["data"].manifest
    with _damaged(f"manifests/{manifest}", lambda p: p.unlink()):
        _, found = _fsck(dataset["name"])
    assert [(p.kind, p.key) for p in found] == [("missing_object", f"manifests/{manifest}")]
    assert found[0].dataset == dataset["name"]


def test_a_damaged_commit_and_a_broken_ref_are_named(dataset: dict[str, Any]) -> None:
    head = dataset["commits"][1]
    with _damaged(
        f"commits/{head}", lambda p: p.write_bytes(p.read_bytes().replace(b"n", b"m", 1))
    ):
        _, found = _fsck(dataset["name"])
    kinds = {(p.kind, p.key or p.ref) for p in found}
    assert ("corrupt_object", f"commits/{head}") in kinds
    assert ("bad_ref", "main") in kinds  # main points at it


def _chunks(dataset: dict[str, Any]) -> list[str]:
    store = get_store()
    commit = get_commit(store, dataset["commits"][1])
    return list(get_manifest(store, commit.tables["data"].manifest).columns.chunks)


def test_a_chunk_that_no_longer_parses_is_named(dataset: dict[str, Any]) -> None:
    cid = _chunks(dataset)[0]

    def cut(p: Path) -> None:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])

    with _damaged(chunk_key(cid), cut):
        _, found = _fsck(dataset["name"])
    assert [(p.kind, p.key) for p in found] == [("corrupt_object", chunk_key(cid))]


def test_changed_rows_under_their_hashes_are_found_by_a_deep_check(dataset: dict[str, Any]) -> None:
    cid = _chunks(dataset)[0]

    def change_a_value(p: Path) -> None:
        table = pq.read_table(p)
        names = table.column("name").to_pylist()
        names[5] = "tampered"
        import pyarrow as pa

        table = table.set_column(table.schema.get_field_index("name"), "name", pa.array(names))
        with parquet_writer(p, table.schema) as w:
            w.write_table(table, row_group_size=128)

    with _damaged(chunk_key(cid), change_a_value):
        _, shallow = _fsck(dataset["name"])
        _, deep = _fsck(dataset["name"], deep=True)
    assert shallow == []  # the stored hashes still hash to the chunk's id
    assert [(p.kind, p.key) for p in deep] == [("corrupt_object", chunk_key(cid))]
    assert "row group 0" in deep[0].detail


def test_the_command_exits_1_and_prints_json_lines(
    dataset: dict[str, Any], stack: dict[str, str]
) -> None:
    cmd = [sys.executable, "-m", "api.cli", "fsck", "--json", "--dataset", dataset["name"]]
    env = {**os.environ, **stack}
    clean = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    assert json.loads(clean.stdout.splitlines()[-1])["summary"]["problems"] == 0
    manifest = get_commit(get_store(), dataset["commits"][0]).tables["data"].manifest
    with _damaged(f"manifests/{manifest}", lambda p: p.unlink()):
        bad = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1, bad.stderr
    lines = [json.loads(line) for line in bad.stdout.splitlines()]
    assert lines[0] == {
        "kind": "missing_object",
        "key": f"manifests/{manifest}",
        "dataset": dataset["name"],
        "detail": "manifest missing",
    }
    assert lines[-1]["summary"]["problems"] == 1
    unknown = subprocess.run(
        [*cmd[:-1], "no-such-dataset"], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert unknown.returncode == 2 and "no-such-dataset" in unknown.stderr


def test_an_administrator_checks_as_a_job(
    client: Any, admin: dict[str, str], worker: Any, dataset: dict[str, Any]
) -> None:
    """``POST /api/v1/admin/fsck`` → 202 and a job of the installation (or of
    one dataset) whose result is the report; administrators only, and only
    they see such a job."""
    from tests.conftest import make_user, wait_job

    r = client.post("/api/v1/admin/fsck", json={"deep": True}, headers=admin)
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/api/v1/jobs/{r.json()['job_id']}"
    job = wait_job(client, admin, r.json()["job_id"])
    assert job["state"] == "succeeded", job
    assert job["kind"] == "fsck" and job["dataset_id"] is None and job["ref"] is None
    assert job["result"]["summary"]["problems"] == 0 and job["result"]["problems"] == []
    assert job["result"]["summary"]["objects_checked"] > 0

    manifest = get_commit(get_store(), dataset["commits"][0]).tables["data"].manifest
    with _damaged(f"manifests/{manifest}", lambda p: p.unlink()):
        r = client.post("/api/v1/admin/fsck", json={"dataset": dataset["name"]}, headers=admin)
        job = wait_job(client, admin, r.json()["job_id"])
    assert job["dataset_id"] == dataset["id"]
    assert job["result"]["summary"]["problems"] == 1
    assert job["result"]["problems"][0]["key"] == f"manifests/{manifest}"

    user = make_user(client, admin)
    assert client.post("/api/v1/admin/fsck", json={}, headers=user).status_code == 403
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=user).status_code == 404
    unknown = client.post("/api/v1/admin/fsck", json={"dataset": "no-such"}, headers=admin)
    assert unknown.status_code == 404 and unknown.json()["code"] == "dataset_not_found"


def test_a_read_that_meets_a_damaged_or_missing_chunk_fails_naming_it(
    client: Any, admin: dict[str, str], dataset: dict[str, Any]
) -> None:
    """Never an answer read from what is left: a 500-class problem naming the
    object (the API logs it), no stack trace, and the same page answers again
    once the object is whole."""
    from core import chunks

    commit = dataset["commits"][0]  # a fresh import: read from its chunks, not a read copy
    manifest = get_manifest(get_store(), get_commit(get_store(), commit).tables["data"].manifest)
    cid = manifest.slices(2000, 1)[0][0]
    page = f"/api/v1/datasets/{dataset['id']}/refs/{commit}/data?offset=2000&limit=3"

    def cut(p: Path) -> None:
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])

    for change, code in ((cut, "object_damaged"), (lambda p: p.unlink(), "object_not_found")):
        chunks.forget(chunk_key(cid))
        with _damaged(chunk_key(cid), change):
            r = client.get(page, headers=admin)
        assert r.status_code == 500, r.text
        problem = r.json()
        assert problem["code"] == code and chunk_key(cid) in problem["detail"]
        assert "Traceback" not in r.text
    chunks.forget(chunk_key(cid))
    again = client.get(page, headers=admin)
    assert again.status_code == 200 and [row[0] for row in again.json()["rows"]] == [
        2000,
        2001,
        2002,
    ]


def test_an_export_that_meets_a_damaged_chunk_mid_stream_breaks_off(
    api_url: str, client: Any, admin: dict[str, str], stack: dict[str, str]
) -> None:
    """Once the first bytes have left, a 500 can no longer be sent: the
    stream stops without its end (the client's HTTP library raises), so a
    reader never takes what arrived for the whole table; the API's log
    names the object."""
    import httpx

    ds = make_dataset(client, admin)
    tag = os.urandom(4).hex()
    body = b"id,name\n" + b"".join(b"%d,%s-%d\n" % (i, tag.encode(), i) for i in range(ROWS))
    job = import_csv(client, admin, ds["id"], body)
    commit = get_commit(get_store(), job["commit_id"])
    manifest = get_manifest(get_store(), commit.tables["data"].manifest)
    last = manifest.slices(ROWS - 1, 1)[0][0]
    assert last != manifest.slices(0, 1)[0][0]  # the first bytes come from another chunk
    url = f"{api_url}/api/v1/datasets/{ds['id']}/refs/{job['commit_id']}/export?format=csv"
    with _damaged(chunk_key(last), lambda p: p.write_bytes(p.read_bytes()[:100])):
        got = b""
        with pytest.raises(httpx.HTTPError), httpx.stream("GET", url, headers=admin) as r:
            assert r.status_code == 200
            for part in r.iter_bytes():
                got += part
        assert 0 < len(got) < len(body)
    log = (Path(stack["DSA_HOME"]) / "api.log").read_text()
    assert chunk_key(last) in log

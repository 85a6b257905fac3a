"""Observability (issue 14): every request gets an id (the caller's
``X-Request-ID`` when sane, else a new one), echoed back and written with
one JSON access-log line; ``/metrics`` lists what an operator alerts on."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from features.integrity import service as integrity
from tests.conftest import login, make_dataset, upload, wait_job


def _eventually(look: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := look()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


def _access_lines(err: str) -> list[dict[str, Any]]:
    out = []
    for line in err.splitlines():
        if line.startswith("{") and '"event": "request"' in line:
            out.append(json.loads(line))
    return out


def test_a_request_id_is_taken_or_made_echoed_and_logged(
    api_url: str, stack: dict[str, str]
) -> None:
    """Over real HTTP, against the API process, whose log is a file; the
    id of an upload's request is followed into the worker's log."""
    client = httpx.Client(base_url=api_url, timeout=60)
    admin = login(client)
    ds = make_dataset(client, admin)
    r = client.get(
        f"/api/v1/datasets/{ds['id']}", headers={**admin, "X-Request-ID": "trace-42.a:b"}
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42.a:b"
    made = client.get("/healthz", headers={"X-Request-ID": "no spaces allowed"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert (
        client.get("/healthz", headers={"X-Request-ID": "x" * 129}).headers["x-request-id"]
        != "x" * 129
    )
    home = Path(stack["DSA_HOME"])
    # the line is written once the answer has gone: wait for it
    mine = _eventually(
        lambda: [
            x
            for x in _access_lines((home / "api.log").read_text())
            if x.get("request_id") == "trace-42.a:b"
        ]
    )
    assert len(mine) == 1, mine
    line = mine[0]
    me = client.get("/api/v1/users/me", headers=admin).json()
    assert line["method"] == "GET" and line["status"] == 200
    assert line["route"] == "/api/v1/datasets/{dataset_id}"
    assert line["user_id"] == me["id"] and line["bytes"] > 0 and line["ms"] >= 0

    rid = f"upload-{uuid.uuid4().hex}"
    r = upload(client, {**admin, "X-Request-ID": rid}, ds["id"], b"a,b\n1,x\n")
    assert r.status_code == 202 and r.headers["x-request-id"] == rid
    assert wait_job(client, admin, r.json()["job_id"])["state"] == "succeeded"
    done = _eventually(
        lambda: [
            x
            for x in (home / "worker.log").read_text().splitlines()
            if rid in x and "import done" in x
        ]
    )
    assert done


def test_metrics_name_what_an_operator_alerts_on(client: Any, admin: dict[str, str]) -> None:
    integrity.gc(grace_s=3600, dry_run=True)
    text = client.get("/metrics").text
    for name in (
        "dsa_http_request_seconds_bucket",
        "dsa_gc_runs_total",
        "dsa_jobs",
        "dsa_queue_length",
        "dsa_jobs_finished_total",
        "dsa_job_seconds",
        "dsa_import_rows_total",
        "dsa_object_store_errors_total",
        "dsa_node_cache_reads_total",
    ):
        assert f"# TYPE {name} " in text or f"\n{name}" in text, name
    assert 'dsa_gc_runs_total{dry_run="true"}' in text

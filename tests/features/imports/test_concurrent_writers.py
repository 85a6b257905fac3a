"""Imports whose branch moves while they run (the ref compare-and-swap loses).

Each test runs one import in this process (``_run_claimed``, as the worker's
child does) and makes another writer land on the branch, through the real
worker, at a fixed point: after the file was read and before the import
commits. Appends and upserts without ``expected_commit_id`` are rebased on the
new head; a replace, or an import naming ``expected_commit_id``, fails with 409.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest

from core import db, queue
from features.auth.service import User
from features.imports import pipeline, service
from features.imports.context import ImportJob
from features.imports.models import ReceivedFile
from features.jobs import service as jobs_service
from tests.conftest import Worker, import_csv, make_dataset, upload


@pytest.fixture
def ctx(client: Any, admin: dict[str, str], worker: Worker) -> dict[str, Any]:
    return {"c": client, "h": admin}


def _head(ctx: dict[str, Any], ds: str) -> str:
    refs = ctx["c"].get(f"/api/v1/datasets/{ds}/refs", headers=ctx["h"]).json()["items"]
    return str(next(r["commit_id"] for r in refs if r["name"] == "main"))


def _rows(ctx: dict[str, Any], ds: str, table: str = "t") -> list[list[Any]]:
    r = ctx["c"].get(
        f"/api/v1/datasets/{ds}/refs/main/data",
        params={"table": table, "limit": 1000},
        headers=ctx["h"],
    )
    assert r.status_code == 200, r.text
    return list(r.json()["rows"])


def _land(ctx: dict[str, Any], ds: str, content: bytes, **fields: str) -> str:
    job = import_csv(ctx["c"], ctx["h"], ds, content, filename="t.csv", **fields)
    assert job["state"] == "succeeded", job
    return str(job["commit_id"])


def _queue(
    ctx: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    ds: dict[str, Any],
    content: bytes,
    **fields: str,
) -> ImportJob:
    """A claimed import job, recorded as the upload route records it but not
    sent to the worker: the test runs it here."""
    me = ctx["c"].get("/api/v1/users/me", headers=ctx["h"]).json()
    user = User(uuid.UUID(me["id"]), me["username"], me["is_admin"])
    request = service.request_from_form(fields, "t.csv", ds.get("primary_key"))
    path = tmp_path / f"upload-{uuid.uuid4().hex}"
    path.write_bytes(content)
    received = ReceivedFile(path, "t.csv", len(content), blake3.blake3(content).hexdigest())
    with monkeypatch.context() as m:
        m.setattr(queue, "enqueue", lambda *args: None)
        with db.transaction() as conn:
            out = service.submit_upload(
                conn, user, dataset_id=uuid.UUID(ds["id"]), branch="main", received=received,
                request=request,
            )  # fmt: skip
    with db.transaction() as conn:
        row = jobs_service.claim(conn, out["job_id"])
    assert row is not None
    return ImportJob.from_row(row)


def _run(ctx: dict[str, Any], job: ImportJob, tmp_path: Path) -> dict[str, Any]:
    work = tmp_path / f"job-{job.id}"
    work.mkdir()
    try:
        pipeline.run_claimed(job, work, isolated=False)
    finally:
        pipeline.drop_upload(job)
    out = ctx["c"].get(f"/api/v1/jobs/{job.id}", headers=ctx["h"]).json()
    assert out["state"] in ("succeeded", "failed"), out
    return dict(out)


def _race(monkeypatch: pytest.MonkeyPatch, other: Callable[[], str]) -> list[str]:
    """Run ``other`` (another writer landing on the branch) once, right after
    the import under test has read its file and before it commits."""
    real = pipeline.build_table
    landed: list[str] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        if not landed:
            landed.append(other())
        return out

    monkeypatch.setattr(pipeline, "build_table", wrapped)
    return landed


def test_an_append_that_loses_the_race_lands_on_the_new_head(
    ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ds = make_dataset(ctx["c"], ctx["h"])
    base = _land(ctx, ds["id"], b"id,v\n1,10\n2,20\n")
    job = _queue(ctx, monkeypatch, tmp_path, ds, b"id,v\n5,50\n6,60\n", mode="append")
    landed = _race(monkeypatch, lambda: _land(ctx, ds["id"], b"v,id\n,3\n40,4\n", mode="append"))
    out = _run(ctx, job, tmp_path)
    assert out["state"] == "succeeded", out
    assert out["result"]["rebases"] == 1 and out["result"]["table_rows"] == 6
    assert _rows(ctx, ds["id"]) == [[1, 10], [2, 20], [3, None], [4, 40], [5, 50], [6, 60]]
    history = ctx["c"].get(f"/api/v1/datasets/{ds['id']}/commits", headers=ctx["h"]).json()
    ids = [(c["id"], c["parents"]) for c in history["items"][:3]]
    assert ids == [(out["commit_id"], [landed[0]]), (landed[0], [base]), (base, ids[2][1])]
    cols = ctx["c"].get(f"/api/v1/datasets/{ds['id']}/refs/main/tables", headers=ctx["h"])
    assert [c["nullable"] for c in cols.json()["items"][0]["columns"]] == [False, True]
    log = ctx["c"].get(f"/api/v1/datasets/{ds['id']}/refs/main/log", headers=ctx["h"]).json()
    assert log["items"][0]["new_commit_id"] == out["commit_id"]
    assert log["items"][0]["reason"] == "import (append) of t.csv, rebased 1x"


def test_an_append_onto_a_retyped_table_reads_the_file_again(
    ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ds = make_dataset(ctx["c"], ctx["h"])
    _land(ctx, ds["id"], b"id,v\n1,10\n")
    job = _queue(ctx, monkeypatch, tmp_path, ds, b"id,v\n5,50\n", mode="append")
    _race(monkeypatch, lambda: _land(ctx, ds["id"], b"id,v\n1,ten\n"))  # v becomes string
    out = _run(ctx, job, tmp_path)
    assert out["state"] == "succeeded", out
    assert _rows(ctx, ds["id"]) == [[1, "ten"], [5, "50"]]


def test_an_append_whose_columns_no_longer_fit_fails_clearly(
    ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ds = make_dataset(ctx["c"], ctx["h"])
    _land(ctx, ds["id"], b"id,v\n1,10\n")
    job = _queue(ctx, monkeypatch, tmp_path, ds, b"id,v\n5,50\n", mode="append")
    other = _race(monkeypatch, lambda: _land(ctx, ds["id"], b"id,w\n1,x\n"))
    out = _run(ctx, job, tmp_path)
    assert out["state"] == "failed" and out["error"]["code"] == "schema_mismatch", out
    assert _head(ctx, ds["id"]) == other[0]


def test_racing_upserts_both_land_with_their_values(
    ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ds = make_dataset(ctx["c"], ctx["h"], primary_key=["id"])
    _land(ctx, ds["id"], b"id,v\n1,a\n2,b\n3,c\n")
    job = _queue(ctx, monkeypatch, tmp_path, ds, b"id,v\n2,B\n4,d\n", mode="upsert")
    _race(monkeypatch, lambda: _land(ctx, ds["id"], b"id,v\n3,C\n5,e\n", mode="upsert"))
    out = _run(ctx, job, tmp_path)
    assert out["state"] == "succeeded", out
    assert out["result"]["rebases"] == 1
    assert _rows(ctx, ds["id"]) == [[1, "a"], [2, "B"], [3, "C"], [5, "e"], [4, "d"]]


def test_a_replace_that_loses_the_race_fails_with_409(
    ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ds = make_dataset(ctx["c"], ctx["h"])
    base = _land(ctx, ds["id"], b"id,v\n1,10\n")
    job = _queue(ctx, monkeypatch, tmp_path, ds, b"id,v\n9,90\n")
    other = _race(monkeypatch, lambda: _land(ctx, ds["id"], b"id,v\n2,20\n", mode="append"))
    out = _run(ctx, job, tmp_path)
    assert out["state"] == "failed", out
    err = out["error"]
    assert err["status"] == 409 and err["code"] == "ref_conflict"
    assert err["expected_commit_id"] == base and err["actual_commit_id"] == other[0]
    assert "moved while this replace import ran" in err["detail"]
    assert "upload the file again" in err["detail"]
    assert _head(ctx, ds["id"]) == other[0]
    assert _rows(ctx, ds["id"]) == [[1, 10], [2, 20]]


def test_a_stale_expected_commit_id_is_a_409(
    ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    c, h = ctx["c"], ctx["h"]
    ds = make_dataset(c, h)
    base = _land(ctx, ds["id"], b"id,v\n1,10\n")
    # 1. the branch has moved by the time the job runs
    job = _queue(ctx, monkeypatch, tmp_path, ds, b"id,v\n5,50\n", mode="append",
                 expected_commit_id=base)  # fmt: skip
    moved = _land(ctx, ds["id"], b"id,v\n2,20\n", mode="append")
    out = _run(ctx, job, tmp_path)
    assert out["state"] == "failed" and out["error"]["status"] == 409, out
    assert out["error"]["code"] == "ref_conflict"
    assert out["error"]["expected_commit_id"] == base
    assert out["error"]["actual_commit_id"] == moved
    assert "not at the expected_commit_id" in out["error"]["detail"]

    # 2. it moves while the job runs: an append naming expected_commit_id is not rebased
    job = _queue(ctx, monkeypatch, tmp_path, ds, b"id,v\n6,60\n", mode="append",
                 expected_commit_id=moved)  # fmt: skip
    other = _race(monkeypatch, lambda: _land(ctx, ds["id"], b"id,v\n3,30\n", mode="append"))
    out = _run(ctx, job, tmp_path)
    assert out["state"] == "failed" and out["error"]["code"] == "ref_conflict", out
    assert out["error"]["actual_commit_id"] == other[0]
    assert _rows(ctx, ds["id"]) == [[1, 10], [2, 20], [3, 30]]

    # 3. already stale when the request comes: 409 at once, nothing queued
    r = upload(c, h, ds["id"], b"id,v\n7,70\n", filename="t.csv", mode="append",
               expected_commit_id=base)  # fmt: skip
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "ref_conflict" and r.json()["actual_commit_id"] == other[0]
    r = c.post(
        f"/api/v1/datasets/{ds['id']}/refs/main/imports",
        json={"url": "http://example.invalid/t.csv", "expected_commit_id": base},
        headers=h,
    )
    assert r.status_code == 409 and r.json()["expected_commit_id"] == base, r.text
    # the head itself is accepted
    r = upload(c, h, ds["id"], b"id,v\n7,70\n", filename="t.csv", mode="append",
               expected_commit_id=other[0])  # fmt: skip
    assert r.status_code == 202, r.text


def test_a_branch_that_never_holds_still_fails_after_bounded_attempts(
    ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ds = make_dataset(ctx["c"], ctx["h"])
    _land(ctx, ds["id"], b"id,v\n1,10\n")
    monkeypatch.setattr(pipeline, "REBASE_ATTEMPTS", 0)
    job = _queue(ctx, monkeypatch, tmp_path, ds, b"id,v\n5,50\n", mode="append")
    _race(monkeypatch, lambda: _land(ctx, ds["id"], b"id,v\n2,20\n", mode="append"))
    out = _run(ctx, job, tmp_path)
    assert out["state"] == "failed" and out["error"]["code"] == "ref_conflict", out
    assert out["error"]["attempts"] == 1 and "upload the file again" in out["error"]["detail"]

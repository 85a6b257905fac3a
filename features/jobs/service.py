"""Jobs: the source of truth for background work (not Redis).

A job is created with its upload in the request's transaction, enqueued after
commit, claimed by a worker (``queued``/``running`` -> ``running``; a
redelivered task claims it again), reports progress, and ends ``succeeded``
with a commit id or ``failed`` with a problem document.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core import db
from core.errors import Conflict, NotFound

Q = db.Queries(__file__)


def create(
    conn: psycopg.Connection[Any],
    *,
    kind: str,
    dataset_id: uuid.UUID,
    ref_name: str,
    upload_id: uuid.UUID | None,
    params: dict[str, Any],
    total_bytes: int | None,
    created_by: uuid.UUID | None,
) -> dict[str, Any]:
    row = conn.execute(
        Q.insert_job,
        {
            "id": uuid.uuid4(),
            "kind": kind,
            "dataset_id": dataset_id,
            "ref_name": ref_name,
            "upload_id": upload_id,
            "params": Jsonb(params),
            "total_bytes": total_bytes,
            "created_by": created_by,
        },
    ).fetchone()
    assert row is not None
    return row


def get(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> dict[str, Any]:
    row = conn.execute(Q.get_job, {"id": job_id}).fetchone()
    if row is None:
        raise NotFound(f"job {job_id} does not exist", code="job_not_found")
    return row


def claim(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> dict[str, Any] | None:
    """Mark the job running; None when it has already ended (a duplicate delivery)."""
    return conn.execute(Q.claim, {"id": job_id}).fetchone()


def report_progress(job_id: uuid.UUID, *, rows: int, bytes_read: int) -> bool:
    """Record progress in its own short transaction; False if the job stopped running."""
    with db.transaction() as conn:
        row = conn.execute(Q.progress, {"id": job_id, "rows": rows, "bytes": bytes_read}).fetchone()
    return row is not None


def succeed(
    conn: psycopg.Connection[Any],
    job_id: uuid.UUID,
    *,
    commit_id: str,
    rows: int,
    bytes_read: int,
    result: dict[str, Any],
) -> None:
    conn.execute(
        Q.succeed,
        {
            "id": job_id,
            "commit_id": commit_id,
            "rows": rows,
            "bytes": bytes_read,
            "result": Jsonb({"result": result}),
        },
    )


def cancel(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> dict[str, Any]:
    row = conn.execute(Q.cancel, {"id": job_id}).fetchone()
    if row is None:
        state = get(conn, job_id)["state"]
        raise Conflict(f"the job has already ended ({state})", code="job_ended", state=state)
    return row


def still_running(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> bool:
    """Lock the job row and tell whether it is still running (not cancelled)."""
    row = conn.execute(Q.lock_state, {"id": job_id}).fetchone()
    return row is not None and row["state"] == "running"


def fail(conn: psycopg.Connection[Any], job_id: uuid.UUID, problem: dict[str, Any]) -> None:
    conn.execute(Q.fail, {"id": job_id, "error": Jsonb(problem)})


def to_out(row: dict[str, Any]) -> dict[str, Any]:
    result = (row.get("params") or {}).get("result") or {}
    out: dict[str, Any] = {
        "id": row["id"],
        "kind": row["kind"],
        "state": row["state"],
        "dataset_id": row["dataset_id"],
        "ref": row["ref_name"],
        "progress": {
            "rows": row["rows"],
            "bytes": row["bytes"],
            "total_bytes": row["total_bytes"],
        },
        "commit_id": row["commit_id"],
        "error": row["error"],
        "result": result or None,
        "created_at": row["created_at"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "links": {"self": f"/api/v1/jobs/{row['id']}"},
    }
    return out

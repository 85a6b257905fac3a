"""Jobs: the source of truth for background work (not Redis).

A job is created with its upload in the request's transaction, enqueued after
commit, claimed by a worker (``queued``/``running`` -> ``running``; a
redelivered task claims it again), reports progress, and ends ``succeeded``
with a commit id or ``failed`` with a problem document.
"""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core import db, metrics
from core.config import get_settings
from core.errors import TooManyRequests
from features.jobs.errors import JobEnded, JobNotFound, WorkerLost
from features.webhooks import service as webhooks_service

Q = db.Queries(__file__)


def create(
    conn: psycopg.Connection[Any],
    *,
    kind: str,
    dataset_id: uuid.UUID | None,  # None: a job of the whole installation (fsck)
    ref_name: str | None,
    upload_id: uuid.UUID | None,
    params: dict[str, Any],
    total_bytes: int | None,
    created_by: uuid.UUID | None,
) -> dict[str, Any]:
    """A queued job. A user with ``DSA_MAX_ACTIVE_JOBS_PER_USER`` jobs queued
    or running already gets 429: one caller cannot fill the queue."""
    if created_by is not None:
        check_room(conn, created_by)
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


def check_room(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> None:
    """429 when the user already has the most jobs queued or running one may."""
    limit = get_settings().max_active_jobs_per_user
    row = conn.execute(Q.active_of_user, {"user_id": user_id}).fetchone()
    if row is not None and row["n"] >= limit:
        raise TooManyRequests(
            f"you have {row['n']} jobs queued or running, the most one user may have "
            f"({limit}); wait for some to finish",
            retry_after=10,
        )


def get(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> dict[str, Any]:
    row = conn.execute(Q.get_job, {"id": job_id}).fetchone()
    if row is None:
        raise JobNotFound(f"job {job_id} does not exist")
    return row


def get_many(conn: psycopg.Connection[Any], job_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """The jobs with these ids that exist, in one query."""
    return conn.execute(Q.get_jobs, {"ids": job_ids}).fetchall()


def claim(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> dict[str, Any] | None:
    """Mark the job running as a new attempt (its ``attempts``); None when it
    has ended, or when another runner is at work on it (a heartbeat within
    ``DSA_JOB_STALE_AFTER_S``: ``busy`` tells the two apart). A task comes
    again because its worker died (Celery redelivers at once, while the dead
    runner's heartbeat is still fresh: the task retries once it is stale) or
    because the reconciler sent a queued job again while its first message
    waited; a duplicate never takes a job from a runner at work. Should one
    be superseded anyway (its heartbeat late past the threshold), it finds
    so at its next heartbeat or when it lands, and stops without touching
    the job (``attempt`` below)."""
    stale_s = get_settings().job_stale_after_s
    return conn.execute(Q.claim, {"id": job_id, "stale_s": stale_s}).fetchone()


def busy(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> bool:
    """Whether the job is running (after a ``claim`` refused it: by another runner)."""
    row = conn.execute(Q.get_job, {"id": job_id}).fetchone()
    return row is not None and row["state"] == "running"


def report_progress(
    job_id: uuid.UUID, *, rows: int, bytes_read: int, attempt: int | None = None
) -> bool:
    """Record progress in its own short transaction; False if the job stopped
    running, or (``attempt``) a later claim superseded this runner."""
    params = {"id": job_id, "rows": rows, "bytes": bytes_read, "attempt": attempt}
    with db.transaction() as conn:
        row = conn.execute(Q.progress, params).fetchone()
    return row is not None


def ended(job_id: uuid.UUID) -> bool:
    """Whether the job has ended (succeeded, failed, cancelled): its inputs may go."""
    with db.read() as conn:
        row = conn.execute(Q.get_job, {"id": job_id}).fetchone()
    return row is None or row["state"] not in ("queued", "running")


def requeue(job_id: uuid.UUID, attempt: int) -> None:
    """Put a job back in the queue's hands (its runner's process was killed):
    the next delivery claims it at once, without waiting for the heartbeat
    to go stale."""
    with db.transaction() as conn:
        conn.execute(Q.requeue, {"id": job_id, "attempt": attempt})


def set_total_bytes(job_id: uuid.UUID, total: int) -> None:
    with db.transaction() as conn:
        conn.execute(Q.set_total, {"id": job_id, "total": total})


def succeed(
    conn: psycopg.Connection[Any],
    job_id: uuid.UUID,
    *,
    commit_id: str | None,
    rows: int,
    bytes_read: int,
    result: dict[str, Any],
) -> None:
    row = conn.execute(
        Q.succeed,
        {
            "id": job_id,
            "commit_id": commit_id,
            "rows": rows,
            "bytes": bytes_read,
            "result": Jsonb({"result": result}),
        },
    ).fetchone()
    if row is not None:
        _ended(row, "succeeded")
        if row["kind"] == "import":
            metrics.IMPORT_ROWS.inc(rows)
            metrics.IMPORT_BYTES.inc(bytes_read)


def cancel(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> dict[str, Any]:
    row = conn.execute(Q.cancel, {"id": job_id}).fetchone()
    if row is None:
        state = get(conn, job_id)["state"]
        raise JobEnded(f"the job has already ended ({state})", state=state)
    return row


def still_running(
    conn: psycopg.Connection[Any], job_id: uuid.UUID, attempt: int | None = None
) -> bool:
    """Lock the job row and tell whether it is still running (not cancelled),
    and (``attempt``) by this runner, not a later claim."""
    row = conn.execute(Q.lock_state, {"id": job_id}).fetchone()
    if row is None or row["state"] != "running":
        return False
    return attempt is None or row["attempts"] == attempt


def fail(
    conn: psycopg.Connection[Any],
    job_id: uuid.UUID,
    problem: dict[str, Any],
    attempt: int | None = None,
) -> None:
    """End the job as failed, unless it ended, or (``attempt``) a later claim runs it."""
    row = conn.execute(
        Q.fail, {"id": job_id, "error": Jsonb(problem), "attempt": attempt}
    ).fetchone()
    if row is not None:
        _ended(row, "failed")
        if row["dataset_id"] is not None:
            webhooks_service.emit(
                conn,
                row["dataset_id"],
                "job.failed",
                {
                    "job_id": row["id"],
                    "kind": row["kind"],
                    "ref": row["ref_name"],
                    "problem": problem,
                },
            )


def _ended(row: dict[str, Any], state: str) -> None:
    metrics.JOBS_FINISHED.labels(row["kind"], state).inc()
    metrics.JOB_SECONDS.labels(row["kind"], state).observe(float(row["seconds"] or 0))


# The task that runs each kind of job (jobs cannot import the features that own them).
TASKS = {"import": "imports.run", "fsck": "integrity.fsck", "gc": "integrity.gc"}
READERS = ("fsck", "gc")  # kinds of job that write no objects
MAX_ATTEMPTS = 5


def reconcile(stale_after_s: float) -> list[uuid.UUID]:
    """Send again the jobs whose worker vanished or whose message was lost.

    A running job with no heartbeat for ``stale_after_s`` seconds (its worker
    was killed, or the machine went away) or a job queued that long is sent
    again; the task is idempotent, so a duplicate is harmless. A job whose
    workers died ``MAX_ATTEMPTS`` times fails instead: the file itself may be
    what kills them.
    """
    from core import queue

    resent: list[uuid.UUID] = []
    with db.transaction() as conn:
        for row in conn.execute(Q.stale, {"after_s": stale_after_s}).fetchall():
            if row["attempts"] >= MAX_ATTEMPTS:
                err = WorkerLost(
                    f"the worker stopped {row['attempts']} times while running this job; "
                    "the file may be what stops it"
                )
                fail(conn, row["id"], err.to_problem(f"/api/v1/jobs/{row['id']}"))
                continue
            conn.execute(Q.lease, {"id": row["id"]})
            task = TASKS[row["kind"]]
            db.after_commit(conn, functools.partial(queue.enqueue, task, str(row["id"])))
            resent.append(row["id"])
    return resent


def clean_tmp(tmp_dir: Path, older_than_s: float) -> int:
    """Remove uploads in flight and job directories left behind (a request cut
    off, a worker killed) once they are older than the retention period."""
    import shutil
    import time

    if not tmp_dir.exists():
        return 0
    cutoff = time.time() - older_than_s
    removed = 0
    for entry in tmp_dir.iterdir():
        try:
            if entry.stat().st_mtime >= cutoff:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed += 1
        except FileNotFoundError:
            continue
    return removed


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
    hints = _suggestions(result)
    if hints:
        out["schema_suggestions"] = hints
    return out


def _suggestions(result: dict[str, Any]) -> list[dict[str, Any]]:
    """An import's schema suggestions, each with its table when the file held several."""
    if "tables" in result:
        return [
            {**h, "table": t.get("table")}
            for t in result["tables"]
            for h in t.get("schema_suggestions") or []
        ]
    return list(result.get("schema_suggestions") or [])


def oldest_writer(conn: psycopg.Connection[Any]) -> Any:
    """When the oldest queued or running job that may write objects (an
    import) was created, or None: garbage collection keeps every object
    written since, however unreferenced (a job's partial outputs)."""
    row = conn.execute(Q.oldest_writer, {"readers": list(READERS)}).fetchone()
    return row["at"] if row else None


def any_active(conn: psycopg.Connection[Any], kind: str) -> bool:
    """Whether a job of ``kind`` is queued or running."""
    row = conn.execute(Q.active_of_kind, {"kind": kind}).fetchone()
    return bool(row and row["yes"])


def active_counts(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Queued and running jobs by kind and state (``kind``, ``state``, ``n``)."""
    return conn.execute(Q.active_counts).fetchall()


def fail_unfinished(conn: psycopg.Connection[Any], problem: dict[str, Any]) -> int:
    """Fail every queued or running job with ``problem`` (after a restore:
    their uploads were not in the backup); how many."""
    return conn.execute(Q.fail_unfinished, {"error": Jsonb(problem)}).rowcount

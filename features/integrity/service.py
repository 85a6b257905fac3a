"""Integrity: is what is stored whole (``fsck``, ``check``), and reclaim
what nothing needs (``gc``, ``gc``): what the CLI, the routes and the tasks
call. An administrator's fsck or gc runs as a job of the installation (no
dataset, kind ``fsck`` or ``gc``), in a child process of the worker, as an
import does (decision 0007), and its finished job carries the report as
``result``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import structlog

from core import db, queue
from core.config import get_settings
from core.errors import DsaError
from features.auth.service import User
from features.datasets import service as datasets_service
from features.datasets.errors import DatasetNotFound
from features.integrity.check import MAX_REPORTED, Problem, Report, fsck
from features.integrity.gc import GcReport, check_grace, gc, locked
from features.jobs import service as jobs_service

__all__ = [
    "MAX_REPORTED",
    "GcReport",
    "Problem",
    "Report",
    "check_grace",
    "dataset_id",
    "fsck",
    "gc",
    "locked",
    "run_job",
    "submit",
]

log = structlog.get_logger(__name__)
TASKS = {"fsck": "integrity.fsck", "gc": "integrity.gc"}


class _Stopped(Exception):
    """The job was cancelled, or another runner took it over."""


def dataset_id(conn: psycopg.Connection[Any], dataset: str) -> Any:
    """The id of the dataset named (or with the id) ``dataset``, or DatasetNotFound."""
    rows = datasets_service.every(conn, dataset)
    if not rows:
        raise DatasetNotFound(f"no dataset is named or has the id {dataset!r}")
    return rows[0]["id"]


def submit(
    conn: psycopg.Connection[Any],
    user: User | None,
    kind: str,
    params: dict[str, Any],
    *,
    dataset_id: Any = None,
) -> Any:
    """Record an fsck or gc job (of one dataset, or of the installation: no
    dataset; ``user`` None for the periodic gc) and send its task once the
    row is committed."""
    job = jobs_service.create(
        conn,
        kind=kind,
        dataset_id=dataset_id,
        ref_name=None,
        upload_id=None,
        params=params,
        total_bytes=None,
        created_by=user.id if user else None,
    )
    db.after_commit(conn, lambda: queue.enqueue(TASKS[kind], str(job["id"])))
    return job["id"]


def gc_pending(conn: psycopg.Connection[Any]) -> bool:
    """Whether a gc job is queued or running."""
    return jobs_service.any_active(conn, "gc")


def run_job(job_id: Any) -> None:
    """The worker's side: claim the job and run it in a child process, held
    to the import's memory and CPU limits (the Celery process stays as it
    was); a child that dies fails the job."""
    from core.isolation import run_isolated

    with db.transaction() as conn:
        row = jobs_service.claim(conn, job_id)
    if row is None:
        return
    settings = get_settings()
    status = run_isolated(
        lambda: _run(job_id, row),
        memory_bytes=settings.import_memory_limit_bytes,
        cpu_s=settings.import_cpu_limit_s,
    )
    if status:
        log.error("admin job child failed", job_id=str(job_id), kind=row["kind"], status=status)
        _fail(
            job_id,
            row,
            DsaError(
                f"the {row['kind']} stopped unexpectedly (out of memory or time?); "
                "it has been logged"
            ),
        )


def _fail(job_id: Any, row: dict[str, Any], err: DsaError) -> None:
    with db.transaction() as conn:
        jobs_service.fail(conn, job_id, err.to_problem(f"/api/v1/jobs/{job_id}"), row["attempts"])


def _heartbeat(job_id: Any, attempt: int) -> Callable[[int, int], None]:
    """A job's heartbeat, at most twice a second; a cancel stops the work."""
    beat = {"at": 0.0}

    def alive(done: int, bytes_read: int) -> None:
        if time.monotonic() - beat["at"] >= 0.5:
            beat["at"] = time.monotonic()
            if not jobs_service.report_progress(
                job_id, rows=done, bytes_read=bytes_read, attempt=attempt
            ):
                raise _Stopped

    return alive


def _run(job_id: Any, row: dict[str, Any]) -> None:
    """In the child: do the work, and end the job with its report."""
    params = row["params"] or {}
    beat = _heartbeat(job_id, row["attempts"])
    try:
        if row["kind"] == "gc":
            gc_report = gc(
                grace_s=params.get("grace_seconds"),
                dry_run=bool(params.get("dry_run")),
                force=bool(params.get("force")),
                alive=lambda r: beat(r.deleted_objects + r.kept_objects, 0),
            )
            result, bytes_read = gc_report.to_json(), 0
        else:
            result = _fsck_result(params, beat)
            bytes_read = result["bytes_read"]
    except _Stopped:
        return
    except Exception as exc:  # the job says so; the worker goes on
        log.exception("admin job failed", job_id=str(job_id), kind=row["kind"])
        _fail(
            job_id,
            row,
            exc
            if isinstance(exc, DsaError)
            else DsaError(f"the {row['kind']} failed; it has been logged"),
        )
        return
    with db.transaction() as conn:
        if jobs_service.still_running(conn, job_id, row["attempts"]):
            jobs_service.succeed(
                conn, job_id, commit_id=None, rows=0, bytes_read=bytes_read, result=result
            )


def _fsck_result(params: dict[str, Any], beat: Callable[[int, int], None]) -> dict[str, Any]:
    """The report of an fsck job: ``summary``, the first ``MAX_REPORTED``
    problems, ``truncated``."""
    found: list[dict[str, Any]] = []

    def emit(p: Problem) -> None:
        if len(found) < MAX_REPORTED:
            found.append(p.to_json())

    report = fsck(
        deep=bool(params.get("deep")),
        dataset=params.get("dataset"),
        emit=emit,
        alive=lambda r: beat(r.objects_checked, r.bytes_read),
    )
    return {
        "summary": report.summary(),
        "problems": found,
        "truncated": report.problems > len(found),
        "bytes_read": report.bytes_read,
        "seconds": round(report.seconds, 3),
    }

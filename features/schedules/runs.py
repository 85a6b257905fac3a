"""A schedule's runs: started by beat's tick, ended when their job ends.

``tick`` (the beat task ``schedules.tick``, every ``DSA_SCHEDULE_TICK_S``)
does two things, each in a transaction of its own:

1. **ends runs** whose import job has ended: ``committed``, ``unchanged``
   (a 304, or rows equal to the branch's table) or ``failed``; a success
   keeps the download's ``ETag`` and ``Last-Modified`` for the next run's
   conditional request and starts the failure count again; a failure
   counts, and the ``DSA_SCHEDULE_MAX_FAILURES``-th in a row pauses the
   schedule and fires ``schedule.paused`` (in the same transaction);
2. **starts the due runs**: the schedules whose ``next_run_at`` has passed,
   taken ``FOR UPDATE SKIP LOCKED`` (a second beat, or a tick that overran,
   skips them), each moved to the cron's next time *after now*, so a
   service that was down runs what it missed once (``catch-up``), not once
   per missed time. A schedule whose last run has not ended skips this
   time (``skipped``): runs never overlap. One whose creator has the most
   jobs a user may have queued (``DSA_MAX_ACTIVE_JOBS_PER_USER``) waits 30 s
   for room, behind others' due runs: waiting is not failing.

A run is an ordinary import job (``imports.service.submit_url``) authored
by the schedule's creator, who must still be able to write to the branch.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import structlog
from croniter import croniter
from psycopg.types.json import Jsonb

from core import db
from core.config import get_settings
from core.errors import DsaError, TooManyRequests
from features.auth import service as auth_service
from features.datasets import service as datasets_service
from features.imports import service as imports_service
from features.jobs import service as jobs_service
from features.refs import service as refs_service
from features.schedules.errors import ScheduleOwnerGone
from features.webhooks import service as webhooks_service

log = structlog.get_logger(__name__)
Q = db.Queries(__file__)
_PLACEHOLDER = re.compile(r"\{(date|url|schedule)\}")


def next_time(cron: str, after: datetime) -> datetime:
    """The cron's first time after ``after`` (UTC)."""
    return croniter(cron, after).get_next(datetime)  # type: ignore[no-any-return]


def message(template: str | None, schedule: dict[str, Any], due_at: datetime) -> str:
    """A run's commit message: the template's ``{date}`` (the time the run
    was due, ISO 8601), ``{url}`` (the first URL, without credentials or
    query string) and ``{schedule}`` (its id) filled in; nothing else in it
    is read as a placeholder."""
    values = {
        "date": due_at.astimezone(UTC).isoformat(timespec="seconds"),
        "url": imports_service.redact(schedule["urls"][0]),
        "schedule": str(schedule["id"]),
    }
    text = template or "Scheduled import of {url}"
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def start(
    conn: psycopg.Connection[Any], schedule: dict[str, Any], trigger: str, due_at: datetime
) -> dict[str, Any]:
    """Start a run of ``schedule``: its import job queued after commit. A
    run that cannot start (its creator gone or no longer a writer, the
    branch deleted, too many jobs) is recorded as failed and counted; a
    ``manual`` one raises instead, for the caller to see."""
    run_id = uuid.uuid4()
    try:
        with conn.transaction():  # a savepoint: a refusal leaves the tick's other runs
            job_id = _submit(conn, schedule, due_at)
    except DsaError as err:
        if trigger == "manual" or isinstance(err, TooManyRequests):
            raise  # a run waiting for room is not a failed one (``tick``)
        problem = err.to_problem()
        _record(conn, run_id, schedule, None, trigger, due_at, "failed", problem)
        _failed(conn, schedule["id"], problem)
        return {"run_id": run_id, "job_id": None, "outcome": "failed", "problem": problem}
    _record(conn, run_id, schedule, job_id, trigger, due_at, None, None)
    return {"run_id": run_id, "job_id": job_id, "outcome": None, "problem": None}


def _submit(conn: psycopg.Connection[Any], schedule: dict[str, Any], due_at: datetime) -> Any:
    user = auth_service.user_by_id(conn, schedule["created_by"]) if schedule["created_by"] else None
    if user is None:
        raise ScheduleOwnerGone(
            "the schedule's creator no longer exists or is disabled; "
            "make the schedule again as another user"
        )
    dataset_id, branch = schedule["dataset_id"], schedule["branch"]
    ds = datasets_service.require_branch(conn, user, dataset_id, branch)
    request = imports_service.request_from_url(
        list(schedule["urls"]),
        checksum=schedule["checksum"],
        mode=schedule["mode"],
        message=message(schedule["message"], schedule, due_at),
        table=schedule["table_name"],
        options=schedule["options"],
        expected_commit_id=None,
        primary_key=ds["primary_key"],
    )
    assert request.source is not None
    # the last download's validators, while the branch is where they matched
    # (a reset or another writer since: the whole file is read and compared)
    same = (
        refs_service.get_branch(conn, dataset_id, branch)["commit_id"]
        == schedule["validated_commit"]
    )
    source = request.source.model_copy(
        update={
            "schedule_id": str(schedule["id"]),
            "etag": schedule["etag"] if same else None,
            "last_modified": schedule["last_modified"] if same else None,
        }
    )
    request = request.model_copy(update={"source": source})
    job = imports_service.submit_url(
        conn, user, dataset_id=dataset_id, branch=branch, request=request
    )
    return job["job_id"]


def _record(
    conn: psycopg.Connection[Any],
    run_id: uuid.UUID,
    schedule: dict[str, Any],
    job_id: Any,
    trigger: str,
    due_at: datetime,
    outcome: str | None,
    problem: dict[str, Any] | None,
) -> None:
    conn.execute(
        Q.insert_run,
        {
            "id": run_id,
            "schedule_id": schedule["id"],
            "job_id": job_id,
            "trigger": trigger,
            "due_at": due_at,
            "outcome": outcome,
            "problem": Jsonb(problem) if problem is not None else None,
        },
    )


def _failed(conn: psycopg.Connection[Any], schedule_id: uuid.UUID, problem: dict[str, Any]) -> None:
    """One more failed run; at the limit, the schedule pauses and says so."""
    row = conn.execute(Q.failed, {"id": schedule_id}).fetchone()
    limit = get_settings().schedule_max_failures
    if row is None or row["paused"] or row["failures"] < limit:
        return
    reason = f"{row['failures']} runs failed in a row; the last: {problem.get('detail', '')}"
    if conn.execute(Q.pause, {"id": schedule_id, "reason": reason[:2000]}).fetchone() is None:
        return
    log.warning("schedule paused", schedule=str(schedule_id), failures=row["failures"])
    webhooks_service.emit(
        conn,
        row["dataset_id"],
        "schedule.paused",
        {
            "schedule_id": str(schedule_id),
            "ref": row["branch"],
            "failures": row["failures"],
            "problem": problem,
        },
    )


def end_runs(conn: psycopg.Connection[Any], limit: int = 1000) -> int:
    """End the runs whose job has ended; how many."""
    open_runs = conn.execute(Q.open_runs, {"limit": limit}).fetchall()
    jobs = {
        j["id"]: j
        for j in jobs_service.get_many(conn, [r["job_id"] for r in open_runs if r["job_id"]])
    }
    ended = 0
    for run in open_runs:
        job = jobs.get(run["job_id"])
        if job is not None and job["state"] in ("queued", "running"):
            continue
        ended += 1
        if job is not None and job["state"] == "succeeded":
            result = (job["params"] or {}).get("result") or {}
            unchanged = bool(result.get("unchanged"))
            _end(conn, run, job, "unchanged" if unchanged else "committed", None)
            validators = "etag" in result or "last_modified" in result
            conn.execute(
                Q.succeeded,
                {
                    "id": run["schedule_id"],
                    "validators": validators,
                    "etag": result.get("etag"),
                    "last_modified": result.get("last_modified"),
                    "commit_id": job["commit_id"],
                },
            )
            continue
        if job is None:
            problem = {"code": "job_gone", "detail": "the run's import job no longer exists"}
        elif job["state"] == "cancelled":
            problem = {"code": "cancelled", "detail": "the run's import job was cancelled"}
        else:
            problem = job["error"] or {"code": "internal", "detail": "the import failed"}
        _end(conn, run, job, "failed", problem)
        _failed(conn, run["schedule_id"], problem)
    return ended


def _end(
    conn: psycopg.Connection[Any],
    run: dict[str, Any],
    job: dict[str, Any] | None,
    outcome: str,
    problem: dict[str, Any] | None,
) -> None:
    conn.execute(
        Q.end_run,
        {
            "id": run["id"],
            "outcome": outcome,
            "finished_at": (job or {}).get("finished_at") or datetime.now(UTC),
            "commit_id": job["commit_id"] if job is not None and outcome == "committed" else None,
            "bytes": (job or {}).get("bytes"),
            "problem": Jsonb(problem) if problem is not None else None,
        },
    )


def tick(limit: int = 1000) -> dict[str, int]:
    """End the runs whose job ended, then start the due ones (the beat task
    ``schedules.tick``); what it did."""
    with db.transaction() as conn:
        ended = end_runs(conn)
    started = skipped = deferred = 0
    full: set[Any] = set()  # creators whose job quota is full: their runs wait
    with db.transaction() as conn:
        now = datetime.now(UTC)
        tick_s = get_settings().schedule_tick_s
        late = max(60.0, 3 * tick_s)
        later = now + timedelta(seconds=max(30.0, tick_s))
        for schedule in conn.execute(Q.due, {"limit": limit}).fetchall():
            if schedule["created_by"] in full:
                conn.execute(Q.set_next, {"id": schedule["id"], "next_run_at": later})
                deferred += 1
                continue
            conn.execute(
                Q.set_next, {"id": schedule["id"], "next_run_at": next_time(schedule["cron"], now)}
            )
            due_at = schedule["next_run_at"]
            if conn.execute(Q.open_run, {"id": schedule["id"]}).fetchone() is not None:
                problem = {"code": "run_in_progress", "detail": "the last run had not ended"}
                _record(conn, uuid.uuid4(), schedule, None, "cron", due_at, "skipped", problem)
                skipped += 1
                continue
            trigger = "catch-up" if (now - due_at).total_seconds() > late else "cron"
            try:
                start(conn, schedule, trigger, due_at)
            except TooManyRequests:
                # its creator has the most jobs one may queued: it waits (behind
                # other creators' due runs) for a tick with room
                conn.execute(Q.set_next, {"id": schedule["id"], "next_run_at": later})
                full.add(schedule["created_by"])
                deferred += 1
                continue
            started += 1
    if started or ended or skipped or deferred:
        log.info("schedules tick", started=started, ended=ended, skipped=skipped, deferred=deferred)
    return {"started": started, "ended": ended, "skipped": skipped, "deferred": deferred}


def expire() -> int:
    """Forget ended runs older than ``DSA_SCHEDULE_RUN_RETENTION`` (each
    schedule's latest kept); how many (the hourly ``schedules.expire``)."""
    with db.transaction() as conn:
        keep = get_settings().schedule_run_retention
        return conn.execute(Q.expire_runs, {"keep_s": keep}).rowcount

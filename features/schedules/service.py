"""Schedules: URL imports that run by themselves, on a cron expression.

A schedule is a URL import (mirrors, checksum, options, mode, table) with a
cron expression (UTC; five fields, or six with seconds), a target branch
and a message template. Beat's ``schedules.tick`` (``runs.tick``) starts
each due run as an ordinary import job whose provenance names the schedule,
asking the server for the file only if it changed since the last run (its
``ETag`` and ``Last-Modified``): a 304, or a file whose rows are the
branch's table already, ends the run ``unchanged`` with no commit, so a
mirrored dataset's history is its source's. ``DSA_SCHEDULE_MAX_FAILURES``
failed runs in a row pause the schedule and fire ``schedule.paused``.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from croniter import CroniterBadCronError, croniter
from psycopg.types.json import Jsonb

from core import db, ratelimit
from core.config import get_settings
from features.auth.service import User
from features.datasets import service as datasets_service
from features.imports import service as imports_service
from features.refs.errors import BranchNotFound
from features.schedules import runs
from features.schedules.errors import (
    InvalidCron,
    RunInProgress,
    ScheduleNotFound,
    TooManySchedules,
)

Q = db.Queries(__file__)
RECENT_RUNS = 20

tick = runs.tick
expire = runs.expire


def check_cron(cron: str, now: datetime | None = None) -> str:
    """``cron`` tidied, once it parses and runs no more often than
    ``DSA_SCHEDULE_MIN_INTERVAL_S``; 422 ``invalid_cron`` otherwise."""
    cron = " ".join(cron.split())
    if len(cron.split()) not in (5, 6):
        raise InvalidCron(
            f"{cron!r} is not a cron expression: five fields (minute hour day month "
            "weekday), or six with seconds last",
            cron=cron,
        )
    try:
        it = croniter(cron, now or datetime.now(UTC))
        times = [it.get_next(datetime) for _ in range(12)]
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise InvalidCron(f"{cron!r} is not a cron expression: {exc}", cron=cron) from None
    least = get_settings().schedule_min_interval_s
    gap = min((b - a).total_seconds() for a, b in zip(times, times[1:], strict=False))
    if gap < least:
        raise InvalidCron(
            f"{cron!r} runs every {gap:g} s; a schedule runs at most once every "
            f"{least:g} s (DSA_SCHEDULE_MIN_INTERVAL_S)",
            cron=cron,
        )
    return cron


def create(
    conn: psycopg.Connection[Any],
    *,
    dataset_id: uuid.UUID,
    created_by: uuid.UUID,
    body: dict[str, Any],
    primary_key: list[str] | None,
) -> dict[str, Any]:
    """Record a schedule (the caller checked write on its branch); its first
    run is due at the cron's next time."""
    cron = check_cron(body["cron"])
    urls = body["urls"]
    # the import it will run, validated now (mode, table, options): 422 here, not at 3 am
    imports_service.request_from_url(
        urls,
        checksum=body.get("checksum"),
        mode=body.get("mode"),
        message=None,
        table=body.get("table"),
        options=body.get("options"),
        expected_commit_id=None,
        primary_key=primary_key,
    )
    conn.execute(Q.lock_dataset, {"dataset_id": dataset_id})
    limit = get_settings().schedules_per_dataset
    count = conn.execute(Q.count_of_dataset, {"dataset_id": dataset_id}).fetchone()
    if count is not None and count["n"] >= limit:
        raise TooManySchedules(
            f"the dataset has {limit} schedules, the most it may have "
            "(DSA_SCHEDULES_PER_DATASET); delete one first",
            limit=limit,
        )
    row = conn.execute(
        Q.insert,
        {
            "id": uuid.uuid4(),
            "dataset_id": dataset_id,
            "branch": body["branch"],
            "cron": cron,
            "urls": urls,
            "checksum": body.get("checksum"),
            "mode": body.get("mode") or "replace",
            "options": Jsonb(body.get("options") or {}),
            "table_name": body.get("table"),
            "message": body.get("message"),
            "next_run_at": runs.next_time(cron, datetime.now(UTC)),
            "created_by": created_by,
        },
    ).fetchone()
    assert row is not None
    return out(row, [])


def list_of(conn: psycopg.Connection[Any], dataset_id: uuid.UUID) -> list[dict[str, Any]]:
    """The dataset's schedules, each with its five latest runs."""
    rows = conn.execute(Q.list, {"dataset_id": dataset_id}).fetchall()
    recent = _runs(conn, [r["id"] for r in rows], 5)
    return [out(r, recent.get(r["id"], [])) for r in rows]


def get(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, schedule_id: uuid.UUID
) -> dict[str, Any]:
    """A schedule with its ``RECENT_RUNS`` latest runs."""
    row = conn.execute(Q.get, {"id": schedule_id, "dataset_id": dataset_id}).fetchone()
    if row is None:
        raise ScheduleNotFound(f"schedule {schedule_id} does not exist")
    return out(row, _runs(conn, [row["id"]], RECENT_RUNS).get(row["id"], []))


def branch_of(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, schedule_id: uuid.UUID) -> str:
    return str(get(conn, dataset_id, schedule_id)["branch"])


def require_change(
    conn: psycopg.Connection[Any], user: User, dataset_id: uuid.UUID, schedule_id: uuid.UUID
) -> None:
    """The caller may pause, change or delete the schedule: the write role,
    and the admin role when its branch is protected (as for an import onto
    it); a schedule whose branch was deleted, any writer."""
    datasets_service.require(conn, user, dataset_id, "write")
    branch = branch_of(conn, dataset_id, schedule_id)
    with contextlib.suppress(BranchNotFound):
        datasets_service.require_branch(conn, user, dataset_id, branch)


def update(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    schedule_id: uuid.UUID,
    *,
    paused: bool | None,
    cron: str | None,
) -> dict[str, Any]:
    """Pause or resume (a resumed schedule starts counting failures again and
    runs at the cron's next time: no burst of what it missed), or change its
    cron."""
    row = conn.execute(Q.lock, {"id": schedule_id, "dataset_id": dataset_id}).fetchone()
    if row is None:
        raise ScheduleNotFound(f"schedule {schedule_id} does not exist")
    new_cron = check_cron(cron) if cron else row["cron"]
    now_paused = row["paused"] if paused is None else paused
    resumed = row["paused"] and not now_paused
    changed = resumed or new_cron != row["cron"]
    reason = None
    if now_paused:  # a pause keeps its reason (the failures that made it); a user's says so
        reason = row["paused_reason"] if row["paused"] else "paused by a user"
    updated = conn.execute(
        Q.update,
        {
            "id": schedule_id,
            "cron": new_cron,
            "paused": now_paused,
            "paused_reason": reason,
            "failures": 0 if resumed else row["failures"],
            "next_run_at": runs.next_time(new_cron, datetime.now(UTC))
            if changed
            else row["next_run_at"],
        },
    ).fetchone()
    assert updated is not None
    return get(conn, dataset_id, schedule_id)


def delete(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, schedule_id: uuid.UUID) -> None:
    """Remove a schedule and its runs' records (their jobs and commits stay)."""
    if conn.execute(Q.delete, {"id": schedule_id, "dataset_id": dataset_id}).fetchone() is None:
        raise ScheduleNotFound(f"schedule {schedule_id} does not exist")


def run_by(user: User, dataset_id: uuid.UUID, schedule_id: uuid.UUID) -> dict[str, Any]:
    """``user`` starts a run now (the API's ``POST …/runs``, the UI's "Run
    now"): who may import onto its branch, within their import rate
    (``DSA_RATE_LIMIT_IMPORTS``)."""
    with db.transaction() as conn:
        datasets_service.require(conn, user, dataset_id, "write")
        branch = branch_of(conn, dataset_id, schedule_id)
        datasets_service.require_branch(conn, user, dataset_id, branch)
    rule = get_settings().rate_limit_imports
    if rule:
        ratelimit.hit(rule, "imports", str(user.id), what="uploads and imports")
    with db.transaction() as conn:
        return run_now(conn, dataset_id, schedule_id)


def run_now(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, schedule_id: uuid.UUID
) -> dict[str, Any]:
    """Start a run now (``manual``), paused or not, unless one is running;
    the cron's times stay as they were."""
    row = conn.execute(Q.lock, {"id": schedule_id, "dataset_id": dataset_id}).fetchone()
    if row is None:
        raise ScheduleNotFound(f"schedule {schedule_id} does not exist")
    if conn.execute(Q.open_run, {"id": schedule_id}).fetchone() is not None:
        raise RunInProgress("the schedule's last run has not ended yet; try again once it has")
    # a manual run that cannot start raises (its creator gone, no room): the caller sees why
    return runs.start(conn, dict(row), "manual", datetime.now(UTC))


def _runs(
    conn: psycopg.Connection[Any], ids: list[uuid.UUID], per: int
) -> dict[uuid.UUID, list[dict[str, Any]]]:
    by: dict[uuid.UUID, list[dict[str, Any]]] = {}
    if not ids:
        return by
    for r in conn.execute(Q.runs, {"ids": ids, "per": per}):
        end = r["finished_at"]
        duration = (end - r["started_at"]).total_seconds() if end else None
        by.setdefault(r["schedule_id"], []).append(
            {k: v for k, v in r.items() if k not in ("k", "schedule_id")} | {"duration_s": duration}
        )
    return by


def out(row: dict[str, Any], recent: list[dict[str, Any]]) -> dict[str, Any]:
    """A schedule as the API shows it: URLs without credentials or query strings."""
    hidden = ("etag", "last_modified", "validated_commit", "table_name")
    shown = {k: v for k, v in row.items() if k not in hidden}
    return shown | {
        "urls": [imports_service.redact(u) for u in row["urls"]],
        "table": row["table_name"],
        "runs": recent,
    }

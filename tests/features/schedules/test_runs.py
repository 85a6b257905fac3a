"""The tick's rules that the end-to-end tests cannot time: a run waiting for
room in its creator's job quota waits (it is not a failure), and the
message template fills in its three placeholders and nothing else."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import make_dataset


def test_a_run_waiting_for_room_waits_and_starts_once_there_is(
    client: Any, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from core import db
    from core.config import get_settings
    from features.auth import service as auth_service
    from features.jobs import service as jobs_service
    from features.schedules import runs

    ds = make_dataset(client, admin)["id"]
    r = client.post(
        f"/api/v1/datasets/{ds}/schedules",
        json={"url": "https://example.invalid/f.csv", "cron": "0 6 1 1 *"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    due = datetime.now(UTC) - timedelta(seconds=5)
    with db.transaction() as conn:
        me = auth_service.user_by_name(conn, "admin")
        active = conn.execute(
            "SELECT count(*) AS n FROM job WHERE created_by = %s AND state IN ('queued','running')",
            (me.id,),
        ).fetchone()["n"]
        conn.execute("UPDATE schedule SET next_run_at = %s WHERE id = %s", (due, sid))
    monkeypatch.setenv("DSA_MAX_ACTIVE_JOBS_PER_USER", str(active + 1))
    get_settings.cache_clear()
    try:
        with db.transaction() as conn:  # the creator's last free slot, taken
            blocker = jobs_service.create(
                conn,
                kind="import",
                dataset_id=uuid.UUID(ds),
                ref_name="main",
                upload_id=None,
                params={},
                total_bytes=None,
                created_by=me.id,
            )
        assert runs.tick()["deferred"] >= 1
        with db.read() as conn:
            row = conn.execute(
                "SELECT next_run_at, failures FROM schedule WHERE id = %s", (sid,)
            ).fetchone()
            n = conn.execute("SELECT count(*) AS n FROM schedule_run WHERE schedule_id = %s",
                             (sid,)).fetchone()["n"]  # fmt: skip
        # not failed, not run: waiting 30 s for room, behind other creators' runs
        assert row["next_run_at"] > datetime.now(UTC) and row["failures"] == 0 and n == 0
        with db.transaction() as conn:
            jobs_service.cancel(conn, blocker["id"])
            conn.execute("UPDATE schedule SET next_run_at = %s WHERE id = %s", (due, sid))
        assert runs.tick()["started"] >= 1
        with db.read() as conn:
            (run,) = conn.execute(
                "SELECT trigger, job_id FROM schedule_run WHERE schedule_id = %s", (sid,)
            ).fetchall()
        assert run["job_id"] is not None and run["trigger"] == "cron"
    finally:
        get_settings.cache_clear()
        client.delete(f"/api/v1/datasets/{ds}/schedules/{sid}", headers=admin)


def test_the_message_template_fills_in_its_placeholders_and_nothing_else() -> None:
    from features.schedules import runs

    schedule = {"id": uuid.UUID(int=7), "urls": ["https://u:p@example.org/d.csv?sig=x"]}
    due = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)
    got = runs.message("{date} {url} {schedule} {0.__class__} {other}", schedule, due)
    assert got == (
        "2026-12-04T06:00:00+00:00 https://example.org/d.csv?<redacted> "
        "00000000-0000-0000-0000-000000000007 {0.__class__} {other}"
    )
    assert runs.message(None, schedule, due) == (
        "Scheduled import of https://example.org/d.csv?<redacted>"
    )

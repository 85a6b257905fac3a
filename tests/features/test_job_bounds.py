"""Work one caller can queue or hold open is bounded (issue 15, "Brute
force and request floods"): jobs per user, event streams and their lifetime.
The tests failed before: nothing was bounded."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from core import db
from core.config import get_settings
from features.jobs import service as jobs_service
from tests.conftest import make_dataset, make_user, upload


@pytest.fixture
def queued() -> Iterator[Any]:
    """Make jobs that stay queued (no task is sent for them); cancelled after."""
    made: list[uuid.UUID] = []

    def make(user_id: str, dataset_id: str) -> str:
        with db.transaction() as conn:
            row = jobs_service.create(
                conn,
                kind="import",
                dataset_id=uuid.UUID(dataset_id),
                ref_name="main",
                upload_id=None,
                params={},
                total_bytes=None,
                created_by=uuid.UUID(user_id),
            )
        made.append(row["id"])
        return str(row["id"])

    yield make
    with db.transaction() as conn:
        for job_id in made:
            conn.execute("UPDATE job SET state = 'cancelled' WHERE id = %s", (job_id,))


def _me(client: Any, headers: dict[str, str]) -> str:
    return str(client.get("/api/v1/users/me", headers=headers).json()["id"])


def test_a_user_has_at_most_so_many_jobs_queued_or_running(
    client: Any, admin: dict[str, str], queued: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = make_user(client, admin)
    ds = make_dataset(client, user)
    monkeypatch.setattr(get_settings(), "max_active_jobs_per_user", 2)
    for _ in range(2):
        queued(_me(client, user), ds["id"])
    r = upload(client, user, ds["id"], b"id\n1\n")
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert "2 jobs queued or running" in r.json()["detail"]
    r = client.post(
        f"/api/v1/datasets/{ds['id']}/refs/main/imports",
        json={"url": "https://example.invalid/a.csv"},
        headers=user,
    )
    assert r.status_code == 429
    other = make_user(client, admin)  # another user is not held by this one's jobs
    ds2 = make_dataset(client, other)
    assert upload(client, other, ds2["id"], b"id\n1\n").status_code == 202


def test_event_streams_end_and_are_bounded(
    client: Any, admin: dict[str, str], queued: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.jobs import routes

    ds = make_dataset(client, admin)
    job_id = queued(_me(client, admin), ds["id"])
    monkeypatch.setattr(routes, "EVENTS_MAX_S", 0.6)
    started = time.monotonic()
    r = client.get(f"/api/v1/jobs/{job_id}/events", headers=admin)
    assert r.status_code == 200 and time.monotonic() - started < 5
    assert r.text.startswith("retry: 1000") and "event: progress" in r.text
    assert "event: end" not in r.text  # it ended by its lifetime; the browser reconnects
    monkeypatch.setattr(routes, "EVENTS_MAX_STREAMS", 0)
    r = client.get(f"/api/v1/jobs/{job_id}/events", headers=admin)
    assert r.status_code == 429 and r.json()["code"] == "too_many_requests"
    monkeypatch.setattr(routes, "EVENTS_MAX_STREAMS", 256)
    me = uuid.UUID(_me(client, admin))
    monkeypatch.setitem(routes._streams_of, me, routes.EVENTS_MAX_PER_USER)  # as if open
    r = client.get(f"/api/v1/jobs/{job_id}/events", headers=admin)
    assert r.status_code == 429

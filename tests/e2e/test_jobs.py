"""Job progress as server-sent events, and cancelling a job."""

from __future__ import annotations

import json
import time
import uuid

import httpx

from tests.conftest import import_csv, make_dataset, upload, wait_job


def big_csv(rows: int = 400_000) -> bytes:
    return ("a,b\n" + "".join(f"{i},{i % 13}\n" for i in range(rows))).encode()


def test_events_stream_progress_then_the_end(http: httpx.Client, auth: dict[str, str]) -> None:
    ds = make_dataset(http, auth)["id"]
    body = big_csv(800_000)
    job_id = upload(http, auth, ds, body).json()["job_id"]
    events: list[tuple[str, dict]] = []
    with http.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=auth) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name or "", json.loads(line[6:])))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "end" and set(kinds[:-1]) <= {"progress"}
    final = events[-1][1]
    assert final["state"] == "succeeded" and final["progress"]["rows"] == 800_000
    running = [e for k, e in events if k == "progress" and e["state"] == "running"]
    assert any(e["progress"]["bytes"] > 0 for e in running), kinds


def test_cancel_a_running_import_commits_nothing(http: httpx.Client, auth: dict[str, str]) -> None:
    ds = make_dataset(http, auth)["id"]
    job_id = upload(http, auth, ds, big_csv(800_000)).json()["job_id"]
    deadline = time.monotonic() + 30
    while http.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    r = http.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth)
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    time.sleep(3)  # the worker notices at its next progress report and stops
    job = http.get(f"/api/v1/jobs/{job_id}", headers=auth).json()
    assert job["state"] == "cancelled" and job["commit_id"] is None
    assert http.get(f"/api/v1/datasets/{ds}/commits", headers=auth).json()["total"] == 1
    # the worker goes on serving
    assert import_csv(http, auth, ds, b"x\n1\n")["state"] == "succeeded"
    # an ended job cannot be cancelled
    r = http.post(f"/api/v1/jobs/{job_id}/cancel", headers=auth)
    assert r.status_code == 409 and r.json()["code"] == "job_ended"


def test_cancel_needs_write_and_visibility(http: httpx.Client, auth: dict[str, str]) -> None:
    from tests.conftest import make_user

    ds = make_dataset(http, auth)["id"]
    job_id = upload(http, auth, ds, b"a\n1\n").json()["job_id"]
    wait_job(http, auth, job_id)
    stranger = make_user(http, auth)
    assert http.post(f"/api/v1/jobs/{job_id}/cancel", headers=stranger).status_code == 404
    assert http.get(f"/api/v1/jobs/{job_id}/events", headers=stranger).status_code == 404


def test_open_streams_share_one_read_of_the_job_table_a_tick(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    """Fifty event streams on two jobs cost one query a tick, not one a
    stream (before: each stream read its job four times a second)."""
    import asyncio

    from features.jobs.events import Watcher

    ds = make_dataset(http, auth)["id"]
    jobs = [import_csv(http, auth, ds, b"a\n%d\n" % i)["id"] for i in range(2)]
    jobs = [uuid.UUID(j) for j in jobs]

    async def main() -> tuple[int, int]:
        watch = Watcher()
        seen = 0

        async def stream(job: uuid.UUID) -> None:
            nonlocal seen
            async with watch.watching(job):
                for _ in range(4):
                    row = await watch.next(job)
                    assert row is not None and row["id"] == job and row["state"] == "succeeded"
                    seen += 1

        await asyncio.gather(*(stream(jobs[i % 2]) for i in range(50)))
        return watch.queries, seen

    queries, seen = asyncio.run(main())
    assert seen == 200 and queries <= 6, queries

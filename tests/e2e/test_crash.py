"""Workers that die: SIGKILL in the middle of an import, several times.

The job ends `succeeded` with exactly one commit whose tables are those a clean
run gives, and no partial commit is ever visible."""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import Worker, import_csv, make_dataset, resend_quiet_job, upload, wait_job

ROWS = 800_000
ENDED = ("succeeded", "failed", "cancelled")


def body() -> bytes:
    return ("k,v,w\n" + "".join(f"{i},{i * 31 % 97},w{i % 11}\n" for i in range(ROWS))).encode()


def _importer(upload_key: str, killed: set[int] | None = None) -> psutil.Process | None:
    """The worker process that has the upload open (the one running the import),
    not one of ``killed`` (a killed process lists its files until it is gone)."""
    for proc in psutil.process_iter(["cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "api.cli worker" not in cmd or proc.pid in (killed or set()):
            continue
        try:
            if any(upload_key in f.path for f in proc.open_files()):
                return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return None


def _running_with_progress(http: httpx.Client, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = http.get(f"/api/v1/jobs/{job_id}", headers=auth).json()
        if job["state"] == "running" and job["progress"]["bytes"] > 0:
            return dict(job)
        assert job["state"] in ("queued", "running"), job
        time.sleep(0.05)
    raise AssertionError("the job never got going")


def _commits(http: httpx.Client, auth: dict[str, str], ds: str) -> list[dict[str, Any]]:
    return http.get(f"/api/v1/datasets/{ds}/commits", headers=auth).json()["items"]


def _tables(http: httpx.Client, auth: dict[str, str], ds: str, commit: str) -> list[Any]:
    detail = http.get(f"/api/v1/datasets/{ds}/commits/{commit}", headers=auth).json()
    return [(t["name"], t["schema_id"], t["manifest_id"], t["row_count"]) for t in detail["tables"]]


def test_killed_pool_processes_do_not_lose_or_duplicate_the_import(
    http: httpx.Client, auth: dict[str, str], stack: dict[str, str]
) -> None:
    data = body()
    clean_ds = make_dataset(http, auth)["id"]
    clean = import_csv(http, auth, clean_ds, data, filename="k.csv")
    assert clean["state"] == "succeeded"

    ds = make_dataset(http, auth)["id"]
    r = upload(http, auth, ds, data, filename="k.csv")
    job_id, upload_id = r.json()["job_id"], r.json()["upload_id"]
    key = upload_id.replace("-", "")
    kills = 0
    killed: set[int] = set()
    for _ in range(6):
        if kills == 3:
            break
        proc = None
        deadline = time.monotonic() + 30
        while proc is None and time.monotonic() < deadline:
            proc = _importer(key, killed)  # a (re)started pool process picked the job up
            time.sleep(0.05)
        assert proc is not None, "no worker process took the job (again)"
        time.sleep(0.1)  # let it get some way in
        # alternately the import's own process (the worker runs the job again) and
        # the Celery pool process above it (Celery rejects, Redis redelivers; the
        # import process dies with it)
        try:
            victim = proc if kills % 2 == 0 else proc.parent()
        except psutil.NoSuchProcess:  # it ended between being found and now
            if http.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["state"] in ENDED:
                break
            continue
        assert victim is not None
        killed.update({proc.pid, victim.pid})
        os.kill(victim.pid, signal.SIGKILL)
        # a killed import child puts its job back in the queue at once ("queued"
        # until a worker claims it again): only an ended job had finished before
        if http.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["state"] in ENDED:
            break  # it had finished just before
        kills += 1
        # between kills no commit may show up
        assert len(_commits(http, auth, ds)) == 1
    assert kills >= 2
    job = wait_job(http, auth, job_id, timeout=180)
    assert job["state"] == "succeeded", job
    history = _commits(http, auth, ds)
    assert len(history) == 2 and history[0]["id"] == job["commit_id"]
    assert _tables(http, auth, ds, job["commit_id"]) == _tables(
        http, auth, clean_ds, clean["commit_id"]
    )


def test_a_whole_worker_killed_is_finished_by_the_next_one(
    http: httpx.Client, auth: dict[str, str], worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = make_dataset(http, auth)["id"]
    r = upload(http, auth, ds, body(), filename="k.csv")
    job_id = r.json()["job_id"]
    _running_with_progress(http, auth, job_id)
    assert worker.proc is not None
    tree = [worker.proc, *psutil.Process(worker.proc.pid).children(recursive=True)]
    for p in tree:  # the machine "goes away": no chance to reject the message
        os.kill(p.pid, signal.SIGKILL)
    worker.proc.wait(10)
    time.sleep(1)
    assert http.get(f"/api/v1/jobs/{job_id}", headers=auth).json()["state"] == "running"
    worker.start()
    resend_quiet_job(job_id)  # as celery beat's reconciler would
    job = wait_job(http, auth, job_id, timeout=180)
    assert job["state"] == "succeeded", job
    assert len(_commits(http, auth, ds)) == 2


def test_a_job_delivered_twice_while_it_runs_lands_once(
    http: httpx.Client, auth: dict[str, str], worker: Worker
) -> None:
    """A second delivery of a running import's task (the reconciler sending a
    job again while its first message waited in a backlog, or a broker
    restoring an unacknowledged message) does not take the job from its
    runner at work (fresh heartbeat): it steps back, and its task would look
    again once the heartbeat could have gone stale. Before, both ran to the
    end side by side, sharing a work directory, and the first to end
    deleted the upload under the other. One runner, one commit."""
    from core import db
    from features.imports import pipeline
    from features.jobs import service as jobs_service

    ds = make_dataset(http, auth)["id"]
    r = upload(http, auth, ds, body(), filename="twice.csv")
    job_id = uuid.UUID(r.json()["job_id"])
    _running_with_progress(http, auth, str(job_id))  # the worker's runner is at work
    assert pipeline.run(job_id) is False  # the second delivery steps back
    with db.read() as conn:
        assert jobs_service.get(conn, job_id)["attempts"] == 1
    job = wait_job(http, auth, str(job_id), timeout=120)
    assert job["state"] == "succeeded", job
    history = _commits(http, auth, ds)
    assert len(history) == 2 and history[0]["id"] == job["commit_id"]
    assert pipeline.run(job_id) is True  # a delivery after the end: nothing to do

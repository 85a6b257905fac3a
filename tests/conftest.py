"""Test services: real PostgreSQL and Redis.

By default the suite starts the embedded ones (the same wheels ``dsa up``
uses) in a temporary directory. ``DSA_TEST_DATABASE_URL`` (a server URL whose
user may create databases) and ``DSA_TEST_REDIS_URL`` point it at running
servers instead. Either way each run gets a fresh, migrated database.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "admin-password-for-tests"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow", action="store_true", help="also run the tests marked slow (`make test-slow`)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked slow (minutes, gigabytes: tests/e2e/test_scale.py) run
    only with ``--slow``; ``make test`` leaves them out."""
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _with_db(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def stack() -> Iterator[dict[str, str]]:
    from core.embedded import start_postgres, start_redis

    tmp = Path(tempfile.mkdtemp(prefix="dsa-test-"))
    services = []
    server_url = os.environ.get("DSA_TEST_DATABASE_URL")
    if not server_url:
        pg = start_postgres(tmp / "postgres", log_path=tmp / "postgres.log")
        services.append(pg)
        server_url = pg.url
    redis_url = os.environ.get("DSA_TEST_REDIS_URL")
    if not redis_url:
        rd = start_redis(tmp / "redis", log_path=tmp / "redis.log")
        services.append(rd)
        redis_url = rd.url
    db_name = f"dsa_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
    db_url = _with_db(server_url, db_name)
    home = tmp / "home"
    env = {
        "DSA_HOME": str(home),
        "DSA_DATABASE_URL": db_url,
        "DSA_REDIS_URL": redis_url,
        "DSA_STORAGE_URL": (home / "objects").as_uri(),
        "DSA_JWT_SECRET": "test-secret-" + uuid.uuid4().hex,
        "DSA_ADMIN_USER": "admin",
        "DSA_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "DSA_CHUNK_ROWS": "1000",
        # a job whose runner died is taken over once its heartbeat is this old
        # (production: 60 s); the crash tests kill runners
        "DSA_JOB_STALE_AFTER_S": "2",
        "DSA_ROW_GROUP_ROWS": "128",
        "DSA_MAX_UPLOAD_BYTES": str(20 * 1024 * 1024),
        # the test file server is on 127.0.0.1; tests/features/imports/test_fetch.py
        # checks that the rule holds when this is off
        "DSA_URL_IMPORT_ALLOW_PRIVATE": "true",
        # the webhook receivers are on 127.0.0.1 too (tests/e2e/test_webhooks.py
        # checks the rule with this off); retries and leases made short
        "DSA_WEBHOOK_ALLOW_PRIVATE": "true",
        "DSA_WEBHOOK_RETRY_BASE_S": "0.2",
        "DSA_WEBHOOK_TIMEOUT_S": "1",
        "DSA_WEBHOOK_SWEEP_S": "0.5",
        # schedules with a seconds field, ticked often (tests/e2e/test_schedules.py)
        "DSA_SCHEDULE_TICK_S": "0.5",
        "DSA_SCHEDULE_MIN_INTERVAL_S": "1",
        # the suite makes thousands of requests from one address with a few
        # tokens: the limits are raised here and tested with their defaults
        # in tests/api/test_rate_limits.py
        "DSA_RATE_LIMIT_ANONYMOUS": "100000/minute",
        "DSA_RATE_LIMIT_USER": "100000/minute",
        "DSA_RATE_LIMIT_LOGIN_USER": "1000/15 minutes",
        "DSA_RATE_LIMIT_LOGIN_ADDRESS": "100000/15 minutes",
        "DSA_RATE_LIMIT_IMPORTS": "100000/hour",
        "DSA_RATE_LIMIT_USER_LOOKUPS": "100000/hour",
        "DSA_ANONYMOUS_EXPENSIVE_CONCURRENCY": "64",
        "DSA_EXPENSIVE_CONCURRENCY": "256",
        "DSA_EXPENSIVE_PER_USER": "128",
        "DSA_MAX_ACTIVE_JOBS_PER_USER": "1000",
    }
    os.environ.update(env)
    from core import db
    from core.config import get_settings
    from core.migrate import app_login, migrate
    from features.auth import service as auth_service

    get_settings.cache_clear()
    db.close_pool()
    migrate(db_url)
    with db.transaction() as conn:
        auth_service.ensure_admin(conn, username="admin", password=ADMIN_PASSWORD)
    # the API and worker processes connect as the application role, as
    # deployments do (decision 0028); this process keeps the owner's URL
    env["DSA_APP_DATABASE_URL"] = app_login(db_url)
    try:
        yield env
    finally:
        db.close_pool()
        try:
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(db_name)
                    )
                )
        except psycopg.Error:
            pass
        for s in reversed(services):
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``dsa <args>`` as a service process: as the application role."""
    out = open(log, "ab")  # noqa: SIM115
    app = {}
    url, app_url = env.get("DSA_DATABASE_URL", ""), env.get("DSA_APP_DATABASE_URL", "")
    if app_url and url.rsplit("@", 1)[-1] == app_url.rsplit("@", 1)[-1]:  # the same database
        app = {"DSA_DATABASE_URL": app_url}
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", *args],
        env={**os.environ, **env, **app},
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Worker:
    """The session's real Celery worker process; crash tests kill and restart it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = Path(self.env["DSA_HOME"]) / "worker.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        seen = log.read_bytes().count(b" ready.") if log.exists() else 0
        # two slots, as `dsa worker` takes on this 2-CPU machine: the caches a
        # branch move sends (statistics, catalog, quality) run beside the next import
        self.proc = _spawn(["worker", "--concurrency", "2"], self.env, log)
        deadline = time.monotonic() + 60
        while (log.read_bytes() if log.exists() else b"").count(b" ready.") <= seen:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)


@pytest.fixture(scope="session")
def worker(stack: dict[str, str]) -> Iterator[Worker]:
    w = Worker(stack)
    w.start()
    yield w
    w.stop()


@pytest.fixture(scope="session")
def api_url(stack: dict[str, str], worker: Worker) -> Iterator[str]:
    """The API served by uvicorn in its own process, over real HTTP."""
    from core.embedded import free_port

    port = free_port()
    log = Path(stack["DSA_HOME"]) / "api.log"
    proc = _spawn(["api", "--host", "127.0.0.1", "--port", str(port)], stack, log)
    url = f"http://127.0.0.1:{port}"
    wait_api_ready(url, proc, log)
    yield url
    _stop(proc)


def wait_api_ready(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Until the API process at ``url`` answers ``/readyz`` with 200; its log if it never does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"api did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def app(stack: dict[str, str]) -> Any:
    from api.app import create_app

    return create_app()


@pytest.fixture(scope="session")
def client(app: Any) -> Iterator[Any]:
    """In-process client for route tests (the ASGI app, real database)."""
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def login(c: Any, username: str = "admin", password: str = ADMIN_PASSWORD) -> dict[str, str]:
    r = c.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@pytest.fixture(scope="session")
def admin(client: Any) -> dict[str, str]:
    return login(client)


def make_user(c: Any, admin_headers: dict[str, str], **overrides: Any) -> dict[str, str]:
    """Create a user through the API; returns auth headers for it."""
    username = overrides.get("username") or f"user-{uuid.uuid4().hex[:8]}"
    password = overrides.get("password") or "password-" + uuid.uuid4().hex[:8]
    r = c.post(
        "/api/v1/users",
        json={
            "username": username,
            "password": password,
            "is_admin": overrides.get("is_admin", False),
        },
        headers=admin_headers,
    )
    assert r.status_code == 201, r.text
    h = login(c, username, password)
    h["X-Test-Username"] = username
    return h


def make_dataset(c: Any, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    body = {"name": f"ds-{uuid.uuid4().hex[:10]}", **overrides}
    r = c.post("/api/v1/datasets", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def upload(
    c: Any,
    headers: dict[str, str],
    dataset_id: str,
    content: bytes,
    *,
    filename: str = "data.csv",
    branch: str = "main",
    **fields: str,
) -> httpx.Response:
    return c.post(
        f"/api/v1/datasets/{dataset_id}/refs/{branch}/uploads",
        files={"file": (filename, content, "text/csv")},
        data=fields,
        headers=headers,
    )


def wait_job(c: Any, headers: dict[str, str], job_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = c.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return dict(job)
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job['state']} after {timeout}s")
        time.sleep(0.05)


def import_csv(
    c: Any, headers: dict[str, str], dataset_id: str, content: bytes, **kw: Any
) -> dict[str, Any]:
    r = upload(c, headers, dataset_id, content, **kw)
    assert r.status_code == 202, r.text
    return wait_job(c, headers, r.json()["job_id"])


def resend_quiet_job(job_id: str, timeout: float = 30) -> None:
    """Run the reconciler (beat's every 30 s) until it sends the job, whose
    worker died, again."""
    from features.jobs import service as jobs_service

    deadline = time.monotonic() + timeout
    while job_id not in {str(j) for j in jobs_service.reconcile(stale_after_s=1.0)}:
        assert time.monotonic() < deadline, "the reconciler never sent the job again"
        time.sleep(0.5)


def app_routes(app: Any) -> list[Any]:
    """The app's routes (``APIRoute``), also those of included routers
    (which recent FastAPI keeps as one entry each, ``original_router``
    holding them): what the route-table tests walk."""
    from fastapi.routing import APIRoute

    out: list[Any] = []

    def walk(routes: list[Any]) -> None:
        for route in routes:
            if isinstance(route, APIRoute):
                out.append(route)
            elif hasattr(route, "original_router"):
                walk(route.original_router.routes)

    walk(app.router.routes)
    return out


def method_paths(app: Any) -> set[tuple[str, str]]:
    """Every (method, path template) the app serves."""
    return {(m, r.path) for r in app_routes(app) for m in r.methods}

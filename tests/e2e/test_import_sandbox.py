"""The import's sandbox, with a real worker: while it reads a file, the
import child holds no connection to the database or to Redis (before the
sandbox, it inherited the worker's pool)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from tests.conftest import Worker, make_dataset, upload, wait_job


def _endpoints(stack: dict[str, str]) -> set[int]:
    return {urlsplit(stack[name]).port or 0 for name in ("DSA_DATABASE_URL", "DSA_REDIS_URL")}


def test_the_import_child_of_a_real_worker_holds_no_database_or_broker_connection(
    http: httpx.Client, auth: dict[str, str], worker: Worker, stack: dict[str, str]
) -> None:
    assert worker.proc is not None
    top = psutil.Process(worker.proc.pid)
    before = {p.pid for p in top.children(recursive=True)}
    ds = make_dataset(http, auth)["id"]
    body = ("a,b\n" + "".join(f"{i},{i % 13}\n" for i in range(1_500_000))).encode()
    job_id = upload(http, auth, ds, body).json()["job_id"]
    ports = _endpoints(stack)
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while not seen and time.monotonic() < deadline:
        for p in top.children(recursive=True):
            if p.pid in before:
                continue
            try:
                conns = p.net_connections(kind="all")
                parent = p.ppid()
            except psutil.Error:
                continue
            if parent in before and parent != top.pid:  # a pool process's child
                seen.append({"pid": p.pid, "conns": conns})
        time.sleep(0.02)
    assert seen, "no import child was seen"
    for child in seen:
        reach = [c for c in child["conns"] if c.raddr and getattr(c.raddr, "port", None) in ports]
        unix = [c for c in child["conns"] if isinstance(c.raddr, str) and "PGSQL" in c.raddr]
        assert not reach and not unix, child
    job = wait_job(http, auth, job_id, timeout=120)
    assert job["state"] == "succeeded" and job["progress"]["rows"] == 1_500_000, job

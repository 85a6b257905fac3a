"""`dsa up`: the embedded stack starts, answers, stops without leftovers,
and keeps its data across restarts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from core.embedded import free_port

ROOT = Path(__file__).resolve().parents[2]


def _start(home: Path, port: int) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA_")}
    env["DSA_ADMIN_PASSWORD"] = "up-test-password"
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "up", "--home", str(home), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 120
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("DSA is running at"):
            return proc, lines
    proc.kill()
    raise AssertionError("dsa up did not start:\n" + "".join(lines))


def _stop(proc: subprocess.Popen[str], sig: int) -> None:
    kids = psutil.Process(proc.pid).children(recursive=True)
    assert len(kids) >= 4  # postgres, redis, worker, api (and their helpers)
    proc.send_signal(sig)
    proc.wait(60)
    gone, alive = psutil.wait_procs(kids, timeout=30)
    assert not alive, f"left behind: {[p.info for p in alive]}"


def test_up_serves_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = free_port()
    proc, lines = _start(home, port)
    url = f"http://127.0.0.1:{port}"
    text = "".join(lines)
    assert f"DSA is running at {url}" in text and "Admin login: admin" in text
    for sub in ("objects", "postgres", "tmp"):
        assert (home / sub).is_dir()
    with httpx.Client(base_url=url) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").status_code == 200
        tok = c.post(
            "/api/v1/auth/login", json={"username": "admin", "password": "up-test-password"}
        ).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        ds = c.post("/api/v1/datasets", json={"name": "kept"}, headers=h).json()
        r = c.post(
            f"/api/v1/datasets/{ds['id']}/refs/main/uploads",
            files={"file": ("k.csv", b"a,b\n1,x\n2,y\n")},
            headers={**h, "X-Request-ID": "up-test-upload-1"},
        )
        assert r.headers["x-request-id"] == "up-test-upload-1"
        job = r.json()["job_id"]
        for _ in range(200):
            state = c.get(f"/api/v1/jobs/{job}", headers=h).json()["state"]
            if state in ("succeeded", "failed"):
                break
            time.sleep(0.1)
        assert state == "succeeded"
        # the worker's counters, merged by the API's /metrics (PROMETHEUS_MULTIPROC_DIR)
        metrics = c.get("/metrics").text
        assert 'dsa_jobs_finished_total{kind="import",state="succeeded"} 1.0' in metrics
        assert "dsa_import_rows_total 2.0" in metrics
        assert "dsa_http_request_seconds_bucket" in metrics and "dsa_queue_length" in metrics
    # the upload's request id, followed into the worker's log of the import
    # (the job succeeds as it lands; the child logs "import done" a moment
    # later, after saving the line index: wait for the line)
    deadline = time.monotonic() + 20
    while True:
        worker_log = (home / "logs" / "worker.log").read_text()
        done = any(
            "up-test-upload-1" in line and "import done" in line for line in worker_log.splitlines()
        )
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert done, worker_log[-3000:]
    _stop(proc, signal.SIGINT)

    proc, _ = _start(home, port)
    with httpx.Client(base_url=url) as c:
        tok = c.post(
            "/api/v1/auth/login", json={"username": "admin", "password": "up-test-password"}
        ).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        page = c.get(f"/api/v1/datasets/{ds['id']}/refs/main/data", headers=h).json()
        assert page["rows"] == [[1, "x"], [2, "y"]]
    _stop(proc, signal.SIGTERM)

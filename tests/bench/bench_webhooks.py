"""Webhook fan-out (issue 18): 100 webhooks on one dataset, the time from a
commit to the last of its deliveries.

    .venv/bin/python tests/bench/bench_webhooks.py [--hooks 100] [--runs 3]

Starts the embedded stack (``dsa up``: API, two worker slots, beat) with
private addresses allowed for webhooks, and a receiver on this machine
that answers 204 at once and notes when each delivery arrived. For each
run it imports a small CSV (a new commit on ``main``: one ``commit``
delivery per webhook) and measures from the job's ``finished_at`` (the
landing transaction's commit, on the same clock) to the last delivery
received, and each delivery's latency. Writes
``tests/bench/results/webhooks-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_import import (  # noqa: E402
    Stack,
    free_port,
    login,
    machine,
    percentile,
    write_results,
)

ARRIVED: list[tuple[float, str, str]] = []  # (time, delivery id, event)
LOCK = threading.Lock()


class _Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with LOCK:
            ARRIVED.append(
                (time.time(), self.headers["X-DSA-Delivery"], self.headers["X-DSA-Event"])
            )
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def _wait_job(client: Any, job_id: str) -> dict[str, Any]:
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return dict(job)
        time.sleep(0.02)


def run(args: argparse.Namespace, tmp: Path, res: dict[str, Any]) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    stack = Stack(tmp / "home", free_port(), extra_env={"DSA_WEBHOOK_ALLOW_PRIVATE": "true"})
    try:
        stack.wait_ready(180)
        client = login(stack)
        ds = client.post("/api/v1/datasets", json={"name": "fanout"}).raise_for_status().json()
        for i in range(args.hooks):
            client.post(
                f"/api/v1/datasets/{ds['id']}/webhooks",
                json={"url": f"{url}/{i}", "events": ["commit"]},
            ).raise_for_status()
        runs = []
        for n in range(args.runs):
            with LOCK:
                ARRIVED.clear()
            body = f"id,run\n1,{n}\n".encode()
            r = client.post(
                f"/api/v1/datasets/{ds['id']}/refs/main/uploads",
                files={"file": ("t.csv", body, "text/csv")},
            ).raise_for_status()
            job = _wait_job(client, r.json()["job_id"])
            assert job["state"] == "succeeded", job
            committed = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00"))
            deadline = time.monotonic() + 120
            while len(ARRIVED) < args.hooks:
                assert time.monotonic() < deadline, f"{len(ARRIVED)} of {args.hooks} arrived"
                time.sleep(0.01)
            with LOCK:
                times = sorted(t - committed.timestamp() for t, _, _ in ARRIVED)
                ids = {d for _, d, _ in ARRIVED}
            out = {
                "deliveries": len(times),
                "distinct_ids": len(ids),
                "first_s": round(times[0], 3),
                "p50_s": round(percentile(times, 0.5), 3),
                "last_s": round(times[-1], 3),
            }
            runs.append(out)
            print(json.dumps(out), flush=True)
        res["runs"] = runs
        res["last_s_median"] = statistics.median(r["last_s"] for r in runs)
        res["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        stack.stop()
        server.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hooks", type=int, default=100)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    res: dict[str, Any] = {"machine": machine(), "hooks": args.hooks}
    with tempfile.TemporaryDirectory(prefix="dsa-bench-webhooks-") as tmp:
        run(args, Path(tmp), res)
    print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=2))
    write_results("webhooks", res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Does a second delivery of a running import's task run the import again?

    .venv/bin/python tests/bench/redelivery.py [--rows 1000000] [--workers 2]

A task is delivered again when Celery's Redis transport restores a message
left unacknowledged past its visibility timeout (an import running over an
hour, ``core/queue.py``) and when the ``jobs.reconcile`` beat task sends a
job that has waited in the queue longer than ``DSA_JOB_STALE_AFTER_S``
(docs/scale.md). This script makes that happen on purpose: it starts the
embedded stack with ``--workers`` pool processes, uploads the bench table
(bench_import.py), and as soon as the job is running sends a second
``imports.run`` for it to the queue, as either of those would. Then it
reports how many times the job was claimed (``attempts``), how many import
children ran at once, the job's end and the worker's log lines about it.

Exit status 0 when the job succeeded with at most one import child running
at a time past the superseded runner's next heartbeat (it stops: the
latest claim runs the job), 1 otherwise. Claimed twice is expected.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_import import Stack, free_port, generate_csv, login  # noqa: E402
from tests.bench.bench_scaleout import attempts, roles, stack_env  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--workers", type=int, default=2, help="pool processes (2: the copy can run)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dsa-bench-redelivery-"))
    try:
        csv = tmp / "table.csv"
        generate_csv(csv, args.rows)
        stack = Stack(tmp / "home", free_port(), up_args=["--workers", str(args.workers)])
        try:
            stack.wait_ready(120)
            client = login(stack)
            r = client.post("/api/v1/datasets", json={"name": "redelivery"})
            ds = r.raise_for_status().json()["id"]
            with csv.open("rb") as fh:
                r = client.post(
                    f"/api/v1/datasets/{ds}/refs/main/uploads", files={"file": (csv.name, fh)}
                )
            job_id = r.raise_for_status().json()["job_id"]
            while client.get(f"/api/v1/jobs/{job_id}").json()["state"] == "queued":
                time.sleep(0.05)
            from celery import Celery

            broker = Celery(broker=stack_env(stack, "DSA_REDIS_URL"))
            broker.send_task("imports.run", args=[job_id], queue="dsa")
            at_once = 0
            while True:
                at_once = max(at_once, len(roles(stack).get("import", [])))
                job = client.get(f"/api/v1/jobs/{job_id}").json()
                if job["state"] not in ("queued", "running"):
                    break
                time.sleep(0.05)
            time.sleep(3)  # the copy's end, if it runs on
            pg_url = stack_env(stack, "DSA_DATABASE_URL")
            assert pg_url
            claims = attempts(pg_url, [job_id])[0]
        finally:
            stack.stop()
        print(f"job {job_id}: {job['state']}, commit {job.get('commit_id')}")
        if job.get("error"):
            print(f"error: {json.dumps(job['error'])}")
        print(f"claimed {claims} time(s); import children at once (max): {at_once}")
        for line in (tmp / "home" / "logs" / "worker.log").read_text().splitlines():
            if job_id in line and line.startswith("{"):
                event = json.loads(line)
                detail = (event.get("exception") or "").strip().splitlines()[-1:]
                print(f"  {event.get('timestamp')} {event.get('event')} {' '.join(detail)}")
        return 0 if job["state"] == "succeeded" else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

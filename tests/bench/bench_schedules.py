"""Scheduler overhead (issue 18): 1,000 schedules due in the same minute.

    .venv/bin/python tests/bench/bench_schedules.py [--schedules 1000] [--runs 3]

Starts the embedded stack (``dsa up``) with beat's tick slowed to an hour,
so the bench itself ticks: it makes 1,000 datasets through the API and
writes a schedule for each straight into PostgreSQL (all of one creator,
whose job quota is raised to hold their jobs), makes them all due, and
times one ``schedules.tick`` in this process against the stack's database
and broker: claiming the due rows, moving each to its next time, and
queuing 1,000 import jobs (rows, runs, Celery messages). PostgreSQL's load
is read from ``pg_stat_database`` around the tick (transactions, rows
written, blocks read and hit). Each round's jobs are cancelled before the
next. Writes ``tests/bench/results/schedules-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_import import Stack, free_port, login, machine, write_results  # noqa: E402
from tests.bench.bench_scaleout import stack_env  # noqa: E402

STATS = "SELECT xact_commit, tup_inserted, tup_updated, blks_read, blks_hit FROM pg_stat_database WHERE datname = current_database()"  # noqa: E501


def _stats(url: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SELECT pg_stat_clear_snapshot()")
        row = c.execute(STATS).fetchone()
    assert row is not None
    return dict(zip(("xacts", "inserted", "updated", "blks_read", "blks_hit"), row, strict=True))


def run(args: argparse.Namespace, tmp: Path, res: dict[str, Any]) -> None:
    n = args.schedules
    stack = Stack(
        tmp / "home",
        free_port(),
        extra_env={"DSA_SCHEDULE_TICK_S": "3600", "DSA_MAX_ACTIVE_JOBS_PER_USER": str(4 * n)},
    )
    try:
        stack.wait_ready(180)
        client = login(stack)
        me = client.get("/api/v1/users/me").raise_for_status().json()
        url = stack_env(stack, "DSA_DATABASE_URL")
        assert url, "no database URL"
        owner = url.replace("dsa_app@", "postgres@", 1)
        for name in ("DSA_DATABASE_URL", "DSA_REDIS_URL", "DSA_STORAGE_URL", "DSA_JWT_SECRET"):
            value = stack_env(stack, name)
            if value:
                os.environ[name] = value
        os.environ["DSA_HOME"] = str(tmp / "bench-home")
        os.environ["DSA_MAX_ACTIVE_JOBS_PER_USER"] = str(4 * n)
        from features.schedules import runs  # settings read from the environment set above

        t = time.perf_counter()
        datasets = [
            client.post("/api/v1/datasets", json={"name": f"feed-{i}"})
            .raise_for_status()
            .json()["id"]
            for i in range(n)
        ]
        res["datasets_made_s"] = round(time.perf_counter() - t, 1)
        with psycopg.connect(owner, autocommit=True) as c, c.cursor() as cur:
            cur.executemany(
                "INSERT INTO schedule (id, dataset_id, branch, cron, urls, next_run_at, created_by)"
                " VALUES (%s, %s, 'main', '0 6 * * *', %s, now() + interval '1 day', %s)",
                [
                    (uuid.uuid4(), d, [f"http://127.0.0.1:9/feed-{i}.csv"], me["id"])
                    for i, d in enumerate(datasets)
                ],
            )
        rounds = []
        for _ in range(args.runs):
            with psycopg.connect(owner, autocommit=True) as c:
                c.execute("UPDATE job SET state = 'cancelled' WHERE state IN ('queued', 'running')")
                c.execute("DELETE FROM schedule_run")
                c.execute("UPDATE schedule SET next_run_at = now() - interval '1 second'")
                c.execute("ANALYZE schedule")
            before = _stats(owner)
            start = time.perf_counter()
            did = runs.tick(limit=4 * n)
            seconds = time.perf_counter() - start
            after = _stats(owner)
            with psycopg.connect(owner, autocommit=True) as c:
                made = c.execute(
                    "SELECT count(*) FROM schedule_run WHERE job_id IS NOT NULL"
                ).fetchone()
            out = {
                "tick_s": round(seconds, 3),
                "started": did["started"],
                "runs_with_jobs": made[0] if made else 0,
                "per_run_ms": round(1000 * seconds / max(1, did["started"]), 2),
                "pg": {k: after[k] - before[k] for k in after},
            }
            rounds.append(out)
            print(json.dumps(out), flush=True)
        res["rounds"] = rounds
        res["tick_s_median"] = statistics.median(r["tick_s"] for r in rounds)
        res["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        stack.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--schedules", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    res: dict[str, Any] = {"machine": machine(), "schedules": args.schedules}
    with tempfile.TemporaryDirectory(prefix="dsa-bench-schedules-") as tmp:
        run(args, Path(tmp), res)
    print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=2))
    write_results("schedules", res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

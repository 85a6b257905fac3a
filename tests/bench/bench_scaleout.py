"""Scale-out: concurrent imports with one worker process against two (issue 13).

    .venv/bin/python tests/bench/bench_scaleout.py [--storage file|s3] [--jobs 8]
        [--rows 250000] [--workers 1 2] [--keep]

1. generates ``--jobs`` distinct seeded CSVs of ``--rows`` rows each (the
   bench table of bench_import.py: one table of jobs x rows rows cut into
   consecutive slices, so no two files share a row);
2. for each ``--workers`` count: starts a fresh embedded stack
   (``dsa up --workers N``: N Celery pool processes; on ``--storage s3`` a
   fresh moto server too, so no run finds another's chunks), logs in, makes
   a dataset per file, runs one small warm-up import per worker process;
3. posts every file at once (a thread each, ``POST …/refs/main/uploads``),
   polls the jobs until all have ended and reports: wall time (first byte
   of the first upload to the last job's ``finished_at``), rows/s over the
   wall time, per-job latency (its upload's first byte to its
   ``finished_at``: median and max; and its time queued and running);
4. while the jobs run, every 0.5 s: how many imports run at once (the
   forked import children under the worker's pool processes), the
   PostgreSQL connections of each process (its TCP connections to the
   server's port) and the server's client backends; and, between the first
   post and the last job's end, the CPU seconds of each part of the stack
   (worker tree with its reaped import children, API, PostgreSQL, Redis,
   moto) and of the whole machine, whose load average is printed with it;
5. prints a table with the ratio of the wall times (1 worker / 2 workers)
   and writes ``tests/bench/results/scaleout-<storage>-<timestamp>.json``.

The machine is shared: the load average before and after each run and the
machine's busy CPU over the window say how much else ran.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_import import (  # noqa: E402
    S3Server,
    Stack,
    free_port,
    generate_csv,
    login,
    machine,
    tail,
    write_results,
)

# --------------------------------------------------------------------------- the stack's processes


def _cmd(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def roles(stack: Stack, s3: S3Server | None = None) -> dict[str, list[psutil.Process]]:
    """The stack's processes by part: ``worker`` (the Celery main process),
    ``pool`` (its pool processes), ``import`` (the children they fork for
    imports), ``api``, ``beat``, ``postgres``, ``redis``, ``up``, ``moto``."""
    out: dict[str, list[psutil.Process]] = {}
    try:
        up = psutil.Process(stack.proc.pid)
        kids = up.children(recursive=True)
    except psutil.Error:
        return out
    out["up"] = [up]
    workers = {p.pid for p in kids if "api.cli" in _cmd(p) and "worker" in _cmd(p)}
    for p in kids:
        cmd = _cmd(p)
        try:
            ppid = p.ppid()
            grand = psutil.Process(ppid).ppid() if ppid in workers else None
        except psutil.Error:
            continue
        if p.pid in workers:
            role = "pool" if ppid in workers else "worker"
            if grand in workers:  # a child of a pool process: an import
                role = "import"
        elif ppid in workers or grand in workers:
            role = "import"
        elif "api.cli" in cmd and "api" in cmd:
            role = "api"
        elif "api.cli" in cmd and "beat" in cmd:
            role = "beat"
        elif cmd and "redis" in os.path.basename(cmd[0]):
            role = "redis"
        elif cmd and "postgres" in os.path.basename(cmd[0]) or p.name().startswith("postgres"):
            role = "postgres"
        else:
            role = "other"
        out.setdefault(role, []).append(p)
    if s3 is not None:
        out["moto"] = [psutil.Process(s3.proc.pid)]
    return out


def stack_env(stack: Stack, name: str) -> str | None:
    """A variable of the environment ``dsa up`` gave its API (Linux)."""
    for p in roles(stack).get("api", []):
        try:
            env = Path(f"/proc/{p.pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in env:
            key, _, value = item.decode(errors="replace").partition("=")
            if key == name:
                return value
    return None


def other_database(url: str, name: str = "postgres") -> str:
    """``url`` with another database name."""
    return urlparse(url)._replace(path=f"/{name}").geturl()


def cpu_seconds(p: psutil.Process) -> float:
    """User + system CPU of a process and of its children it has waited for."""
    t = p.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def cpu_snapshot(parts: dict[str, list[psutil.Process]]) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of each process of the stack, and of this bench
    (its uploading and polling threads and its monitor)."""
    parts = {**parts, "bench": [psutil.Process()]}
    snap: dict[int, tuple[str, float]] = {}
    for role, procs in parts.items():
        for p in procs:
            try:
                snap[p.pid] = (role, cpu_seconds(p))
            except psutil.Error:
                continue
    return snap


def cpu_by_role(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds spent between two snapshots, by part. A process that ended
    in between is counted in its parent's ``children_*`` once reaped (an
    import child by its pool process, a PostgreSQL backend by the postmaster);
    one that started in between counts whole."""
    out: dict[str, float] = {}
    for pid, (role, secs) in after.items():
        start = before.get(pid, (role, 0.0))[1]
        role = "worker tree" if role in ("worker", "pool", "import") else role
        out[role] = out.get(role, 0.0) + max(secs - start, 0.0)
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine since boot: busy is
    user, nice, system and interrupts (guest time is inside user); steal is
    what the hypervisor gave other VMs while this one wanted to run."""
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return float(busy), float(getattr(t, "steal", 0.0))


_DEPTH = {"worker": 1, "pool": 2, "import": 3}
_CLIENTS = {"up", "api", "beat", "worker", "pool", "import"}  # DSA's processes
BENCH_APP = "dsa-bench"  # application_name of the benches' own connections: not counted


class Monitor(threading.Thread):
    """Samples, every ``interval`` s: imports running at once, the PostgreSQL
    connections of each part of the stack (TCP connections to the server's
    port) and the server's client backends."""

    def __init__(self, stack: Stack, pg_url: str, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.stack, self.pg_url, self.interval = stack, pg_url, interval
        self.pg_port = urlparse(pg_url).port or 5432
        self.imports: list[int] = []
        self.conns: dict[str, int] = {}  # peak connections of one process, by part
        self.conns_total: dict[str, int] = {}  # peak connections of all processes of a part
        self.backends = 0  # peak client backends (this monitor's own excluded)
        self._halt = threading.Event()

    def _sample_connections(self, parts: dict[str, list[psutil.Process]]) -> None:
        """Each connection to the server once, owned by the shallowest process
        holding it: a forked import child keeps its pool process's sockets
        open (unused, core/isolation.py) besides its own."""
        owner: dict[Any, tuple[int, str, int]] = {}  # local address -> (depth, role, pid)
        for role, procs in parts.items():
            if role not in _CLIENTS:
                continue  # the servers' own processes connect to nothing of interest
            for p in procs:
                try:
                    cs = p.net_connections(kind="tcp4")
                except psutil.Error:
                    continue
                for c in cs:
                    if c.raddr and c.raddr[1] == self.pg_port:
                        mine = (_DEPTH.get(role, 0), role, p.pid)
                        owner[c.laddr] = min(owner.get(c.laddr, mine), mine)
        per_pid: dict[tuple[str, int], int] = {}
        for _, role, pid in owner.values():
            per_pid[(role, pid)] = per_pid.get((role, pid), 0) + 1
        per_role: dict[str, int] = {}
        for (role, _), n in per_pid.items():
            self.conns[role] = max(self.conns.get(role, 0), n)
            per_role[role] = per_role.get(role, 0) + n
        for role, n in per_role.items():
            self.conns_total[role] = max(self.conns_total.get(role, 0), n)

    def run(self) -> None:
        import psycopg

        # the server's "postgres" database: this monitor's queries stay out of
        # the statistics of DSA's database (bench_footprint.py counts them)
        url = other_database(self.pg_url)
        try:
            with psycopg.connect(url, autocommit=True, application_name=BENCH_APP) as conn:
                while not self._halt.is_set():
                    parts = roles(self.stack)
                    self.imports.append(len(parts.get("import", [])))
                    self._sample_connections(parts)
                    row = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE backend_type = 'client backend' AND application_name <> %s",
                        (BENCH_APP,),
                    ).fetchone()
                    self.backends = max(self.backends, int(row[0]) if row else 0)
                    self._halt.wait(self.interval)
        except psycopg.OperationalError:
            return  # the server stopped

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


# --------------------------------------------------------------------------- the run


def post_upload(client: httpx.Client, ds: str, path: Path) -> dict[str, Any]:
    start = time.time()
    with path.open("rb") as fh:
        r = client.post(
            f"/api/v1/datasets/{ds}/refs/main/uploads",
            files={"file": (path.name, fh, "text/csv")},
        )
    r.raise_for_status()
    return {"job_id": r.json()["job_id"], "posted_at": start, "answered_at": time.time()}


def wait_jobs(client: httpx.Client, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Every job once ended (a gentle client: one round of polls every 0.5 s)."""
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(ids):
        for job_id in ids:
            if job_id not in done:
                job = client.get(f"/api/v1/jobs/{job_id}").raise_for_status().json()
                if job["state"] in ("succeeded", "failed", "cancelled"):
                    done[job_id] = job
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(ids) - len(done)} jobs still running after {timeout} s")
        time.sleep(0.5)
    return done


def attempts(pg_url: str, ids: list[str]) -> list[int]:
    """How many times each job was claimed by a worker (1: once)."""
    import psycopg

    with psycopg.connect(pg_url, application_name=BENCH_APP) as conn:
        rows = conn.execute("SELECT attempts FROM job WHERE id = ANY(%s::uuid[])", (ids,))
        return sorted(int(r[0]) for r in rows.fetchall())


def _at(job: dict[str, Any], field: str) -> float:
    return datetime.fromisoformat(job[field].replace("Z", "+00:00")).timestamp()


def one_run(
    args: argparse.Namespace, tmp: Path, files: list[Path], warmup: Path, workers: int
) -> dict[str, Any]:
    run_dir = tmp / f"w{workers}"
    run_dir.mkdir()
    s3 = S3Server.start(run_dir) if args.storage == "s3" else None
    env = dict(s3.env if s3 else {})
    env.update(kv.split("=", 1) for kv in args.env)
    stack = Stack(run_dir / "home", free_port(), extra_env=env, up_args=["--workers", str(workers)])
    res: dict[str, Any] = {"workers": workers, "storage": args.storage}
    try:
        stack.wait_ready(120)
        client = login(stack)

        def dataset(name: str) -> str:
            r = client.post("/api/v1/datasets", json={"name": name})
            return str(r.raise_for_status().json()["id"])

        # one small import per pool process first: what a process pays once
        # (first imports of modules, first connections) is not in the figure
        warm_ds = [dataset(f"warmup-{k}") for k in range(workers)]
        with ThreadPoolExecutor(workers) as pool:
            posted = list(pool.map(lambda d: post_upload(client, d, warmup), warm_ds))
        wait_jobs(client, [p["job_id"] for p in posted], args.timeout)
        datasets = [dataset(f"scaleout-{k}") for k in range(len(files))]
        time.sleep(1.0)

        pg_url = stack_env(stack, "DSA_DATABASE_URL")
        assert pg_url, "no DSA_DATABASE_URL in the API's environment"
        monitor = Monitor(stack, pg_url, interval=0.5)
        res["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
        parts = roles(stack, s3)
        cpu0, busy0, w0 = cpu_snapshot(parts), machine_busy(), time.monotonic()
        monitor.start()
        with ThreadPoolExecutor(len(files)) as pool:
            posted = list(
                pool.map(lambda a: post_upload(client, *a), zip(datasets, files, strict=True))
            )
        jobs = wait_jobs(client, [p["job_id"] for p in posted], args.timeout)
        monitor.stop()
        cpu1, busy1, w1 = cpu_snapshot(roles(stack, s3)), machine_busy(), time.monotonic()
        res["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
        res["attempts"] = attempts(pg_url, list(jobs))
        log = (run_dir / "home" / "logs" / "worker.log").read_text(errors="replace")
        # the jobs.reconcile beat task sends queued jobs again once they have
        # waited DSA_JOB_STALE_AFTER_S (60 s); a copy that finds its job ended
        # does nothing
        res["reconciler_resends"] = sum(
            len(re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", line))
            for line in log.splitlines()
            if "jobs sent again" in line
        )
        res["deliveries_of_ended_jobs"] = log.count("job already ended")
        failed = [j for j in jobs.values() if j["state"] != "succeeded"]
        if failed:
            raise RuntimeError(f"{len(failed)} jobs failed: {json.dumps(failed[0].get('error'))}")

        t0 = min(p["posted_at"] for p in posted)
        per_job = []
        for p in posted:
            job = jobs[p["job_id"]]
            per_job.append(
                {
                    "latency_s": _at(job, "finished_at") - p["posted_at"],
                    "upload_s": p["answered_at"] - p["posted_at"],
                    "queued_s": _at(job, "started_at") - _at(job, "created_at"),
                    "run_s": _at(job, "finished_at") - _at(job, "started_at"),
                    "rows": job["progress"]["rows"],
                }
            )
        wall = max(_at(j, "finished_at") for j in jobs.values()) - t0
        lat = [j["latency_s"] for j in per_job]
        window = w1 - w0  # the CPU window: a little longer than the wall time
        res.update(
            wall_s=wall,
            rows=sum(j["rows"] for j in per_job),
            rows_per_s=sum(j["rows"] for j in per_job) / wall,
            latency_median_s=statistics.median(lat),
            latency_max_s=max(lat),
            queued_median_s=statistics.median(j["queued_s"] for j in per_job),
            run_median_s=statistics.median(j["run_s"] for j in per_job),
            upload_max_s=max(j["upload_s"] for j in per_job),
            jobs=per_job,
            cpu_s=cpu_by_role(cpu0, cpu1),
            cpu_window_s=window,
            machine_busy_cpu_s=busy1[0] - busy0[0],
            machine_steal_cpu_s=busy1[1] - busy0[1],
            machine_cpus=psutil.cpu_count(),
            imports_at_once_mean=statistics.fmean(monitor.imports) if monitor.imports else 0,
            imports_at_once_max=max(monitor.imports, default=0),
            pg_conns_peak_per_process=monitor.conns,
            pg_conns_peak_per_part=monitor.conns_total,
            pg_client_backends_peak=monitor.backends,
        )
        client.close()
        return res
    except Exception:
        print(f"--- worker.log (tail)\n{tail(run_dir / 'home' / 'logs' / 'worker.log')}")
        raise
    finally:
        stack.stop()
        if s3 is not None:
            s3.stop()


def report(res: dict[str, Any]) -> None:
    runs = res["runs"]
    print(
        f"\n{res['jobs']} concurrent imports of {res['rows_per_job']:,} rows, "
        f"storage {res['storage']}, {res['machine']['nproc']} CPUs"
    )
    head = (
        f"{'workers':>7} {'wall s':>7} {'rows/s':>9} {'lat med':>8} {'lat max':>8} "
        f"{'queued':>7} {'run':>6} {'at once':>7} {'wk CPU s':>8} {'busy %':>6} "
        f"{'PG conns':>8}  load before/after"
    )
    print(head)
    for r in runs:
        cpu = r["cpu_s"]
        busy = 100 * r["machine_busy_cpu_s"] / (r["cpu_window_s"] * r["machine_cpus"])
        print(
            f"{r['workers']:>7} {r['wall_s']:>7.2f} {r['rows_per_s']:>9,.0f} "
            f"{r['latency_median_s']:>8.2f} {r['latency_max_s']:>8.2f} "
            f"{r['queued_median_s']:>7.2f} {r['run_median_s']:>6.2f} "
            f"{r['imports_at_once_mean']:>7.2f} {cpu.get('worker tree', 0):>8.1f} {busy:>6.0f} "
            f"{r['pg_client_backends_peak']:>8}  {r['loadavg_before']} / {r['loadavg_after']}"
        )
        print(
            "        CPU s by part: "
            + ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items()) if v >= 0.05)
            + f"; machine: busy {r['machine_busy_cpu_s']:.1f} (other work "
            + f"{r['machine_busy_cpu_s'] - sum(cpu.values()):.1f}), steal "
            + f"{r['machine_steal_cpu_s']:.1f} of {r['cpu_window_s'] * r['machine_cpus']:.1f} "
            + "CPU s"
        )
        if max(r.get("attempts") or [1]) > 1 or r.get("reconciler_resends"):
            print(
                f"        claims per job (attempts): {r['attempts']}; jobs sent again by the "
                f"reconciler: {r['reconciler_resends']}; deliveries that found their job "
                f"ended: {r['deliveries_of_ended_jobs']}"
            )
        print(
            "        peak PG connections, one process / all of a part: "
            + ", ".join(
                f"{k} {v}/{r['pg_conns_peak_per_part'].get(k, 0)}"
                for k, v in sorted(r["pg_conns_peak_per_process"].items())
                if v
            )
        )
    by = {r["workers"]: r for r in runs}
    if 1 in by and 2 in by:
        ratio = by[1]["wall_s"] / by[2]["wall_s"]
        res["speedup_2_over_1"] = ratio
        print(f"wall time, 1 worker / 2 workers: {ratio:.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--storage", choices=["file", "s3"], default="file")
    ap.add_argument("--jobs", type=int, default=8, help="imports posted at once")
    ap.add_argument("--rows", type=int, default=250_000, help="rows of each file")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="DSA_X=VALUE",
        help="a setting for the stack (repeatable), e.g. DSA_JOB_STALE_AFTER_S=5",
    )
    args = ap.parse_args()
    res: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "storage": args.storage,
        "env": args.env,
        "jobs": args.jobs,
        "rows_per_job": args.rows,
        "runs": [],
    }
    print(f"machine: {res['machine']['nproc']} CPUs, load {res['machine']['loadavg_at_start']}")
    tmp = Path(tempfile.mkdtemp(prefix="dsa-bench-scaleout-"))
    try:
        t = time.perf_counter()
        df = generate_csv(tmp / "all.csv", args.jobs * args.rows)
        (tmp / "all.csv").unlink()
        files = []
        for k in range(args.jobs):
            files.append(tmp / f"part-{k}.csv")
            df.slice(k * args.rows, args.rows).write_csv(files[-1])
        warmup = tmp / "warmup.csv"
        df.slice(0, 1000).write_csv(warmup)
        del df
        print(f"{args.jobs} CSVs of {args.rows:,} rows ({time.perf_counter() - t:.1f} s)")
        for workers in args.workers:
            got = one_run(args, tmp, files, warmup, workers)
            res["runs"].append(got)
            print(
                f"{workers} worker(s): {got['wall_s']:.2f} s, {got['rows_per_s']:,.0f} rows/s, "
                f"load {got['loadavg_after']}"
            )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    res["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report(res)
    write_results(f"scaleout-{args.storage}", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

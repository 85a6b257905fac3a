"""End-to-end import benchmark for DSA.

    .venv/bin/python tests/bench/bench_import.py [--rows 1000000] [--keep] [--py-spy OUT.svg]

1. generates a seeded CSV (ints, floats, strings, categories, dates,
   timestamps, ~5 % nulls in a few columns) in a temp dir;
2. measures the physical floor: ``polars.read_csv`` + ``write_parquet(zstd)``;
3. starts the embedded stack (``python -m api.cli up``) on a free port;
4. uploads the CSV over HTTP and polls the job until it ends (end-to-end time,
   including upload and queueing), sampling the Celery worker tree's RSS;
5. measures chunk storage vs the CSV size;
6. measures page latency over HTTP (200 seeded random offsets, limit=100);
7. prints a table, writes ``tests/bench/results/import-<timestamp>.json`` and exits
   non-zero when the import failed.

The stack is always stopped (SIGINT, then SIGKILL after 30 s) and the temp
dir removed unless ``--keep``. This is a script, not part of the package.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import psutil

REPO = Path(__file__).resolve().parents[2]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "bench-admin-password"
SEED = 20240601

TARGETS = {
    "import_rows_per_s": 400_000,  # >= end to end, incl. upload and queue
    "ratio_to_floor": 2.5,  # <= end-to-end time / floor time
    "worker_peak_rss_bytes": 1024**3,  # <= max total RSS of the worker tree
    "page_p95_ms": 10.0,  # <= over HTTP
}


# --------------------------------------------------------------------------- data


def _mix(x: pl.Expr) -> pl.Expr:
    """A cheap integer hash into [0, 2**32): all intermediates stay below 2**63."""
    m = 1 << 32
    x = (x * 2_654_435_761 + 0x9E3779B9) % m
    x = ((x ^ (x // 65_536)) * 0x45D9F3B) % m
    x = ((x ^ (x // 65_536)) * 0x45D9F3B) % m
    return x ^ (x // 65_536)


def _h(k: int) -> pl.Expr:
    """Stream k of pseudo-random uint32 values, one per row (seeded, deterministic)."""
    return _mix(pl.col("i") + (SEED + k * 7_919) * 1_000_003)


def generate_csv(path: Path, rows: int) -> pl.DataFrame:
    df = frame(0, rows)
    df.write_csv(path)
    return df


def frame(start: int, rows: int) -> pl.DataFrame:
    """Rows ``start`` to ``start + rows`` of the seeded table: each row is a
    function of its number alone, so a large file is written batch by batch
    (``bench_scale.py``) with the same rows as a small one's."""
    cities = [
        "Amsterdam",
        "Berlin",
        "Cairo",
        "Delhi",
        "Edinburgh",
        "Florence",
        "Geneva",
        "Helsinki",
        "Istanbul",
        "Jakarta",
        "Kyoto",
        "Lima",
        "Madrid",
        "Nairobi",
        "Oslo",
        "Paris",
        "Quito",
        "Rome",
        "Seoul",
        "Toronto",
    ]
    statuses = ["new", "paid", "shipped", "cancelled"]
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    base = pl.DataFrame({"i": pl.int_range(start, start + rows, dtype=pl.Int64, eager=True)})

    def null_5pct(k: int, expr: pl.Expr) -> pl.Expr:
        return pl.when(_h(k) % 100 < 5).then(None).otherwise(expr)

    return base.select(
        pl.col("i").alias("id"),
        (_h(1) % 100_000 + 1).cast(pl.Int64).alias("customer_id"),
        null_5pct(2, _h(3) % 1_000).cast(pl.Int64).alias("quantity"),
        ((_h(4) % 10_000_000).cast(pl.Float64) / 100.0).alias("price"),
        null_5pct(5, (_h(6) % 1_000_000).cast(pl.Float64) / 1_000_000.0).alias("discount"),
        (((_h(7) % 2_000_001).cast(pl.Float64) - 1_000_000.0) / 997.0).alias("score"),
        pl.format("user_{}_{}", _h(8) % 1_000_000, _h(9) % 97).alias("name"),
        pl.lit(pl.Series(cities)).gather(_h(10) % len(cities)).alias("city"),
        pl.lit(pl.Series(statuses)).gather(_h(11) % len(statuses)).alias("status"),
        null_5pct(
            12,
            pl.format(
                "{} {} #{}",
                pl.lit(pl.Series(words)).gather(_h(13) % len(words)),
                pl.lit(pl.Series(words)).gather(_h(14) % len(words)),
                _h(15) % 10_000,
            ),
        ).alias("note"),
        (pl.lit(datetime(2015, 1, 1).date()) + pl.duration(days=_h(16) % 3_650)).alias(
            "order_date"
        ),
        (
            pl.lit(datetime(2020, 1, 1))
            + pl.duration(seconds=_h(17) % (5 * 365 * 86_400), milliseconds=_h(18) % 1_000)
        ).alias("created_at"),
    )


# --------------------------------------------------------------------------- floor


def measure_floor(csv: Path, tmp: Path, *, parse_dates: bool = False) -> tuple[float, int]:
    """Seconds for read_csv + write_parquet(zstd), and the Parquet file's size."""
    out = tmp / "floor.parquet"
    t0 = time.perf_counter()
    frame = pl.read_csv(csv, try_parse_dates=parse_dates)
    frame.write_parquet(out, compression="zstd")
    dt = time.perf_counter() - t0
    size = out.stat().st_size
    out.unlink(missing_ok=True)
    return dt, size


# --------------------------------------------------------------------------- stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    def __init__(
        self,
        home: Path,
        port: int,
        extra_env: dict[str, str] | None = None,
        up_args: list[str] | None = None,
    ) -> None:
        self.home = home
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self.ready = threading.Event()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DSA_")}
        env.update(
            DSA_ADMIN_USER=ADMIN_USER,
            DSA_ADMIN_PASSWORD=ADMIN_PASSWORD,
            PYTHONUNBUFFERED="1",
        )
        env.update(extra_env or {})
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *("-m", "api.cli", "up", "--home", str(home), "--port", str(port)),
                *(up_args or []),  # e.g. ["--workers", "2"]
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if "DSA is running at" in line:
                self.ready.set()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.lines[-30:])
                raise RuntimeError(f"`dsa up` did not become ready:\n{tail}")

    def worker_procs(self) -> list[psutil.Process]:
        """The Celery worker tree: the `api.cli worker` process and its pool children."""
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        tree: dict[int, psutil.Process] = {}  # by pid: pool children match the cmdline too
        for p in kids:
            try:
                cmd = p.cmdline()
            except psutil.Error:
                continue
            if "api.cli" in cmd and "worker" in cmd:
                tree[p.pid] = p
                with contextlib.suppress(psutil.Error):
                    tree.update((c.pid, c) for c in p.children(recursive=True))
        return list(tree.values())

    def wait_idle(self, limit_s: float = 1800) -> float:
        """Wait until the worker tree has been idle (under 5 % of a core) for 3 s
        in a row: the statistics and read copies each new version sets off run
        on the same two cores as the API, and reads measured beside them
        measure them too (at 100M rows, a version's statistics take a worker
        ~100 s). Returns the seconds waited."""
        started = time.monotonic()
        quiet = 0
        seen: dict[int, float] = {}
        while quiet < 3 and time.monotonic() - started < limit_s:
            time.sleep(1)
            busy = 0.0
            for p in self.worker_procs():
                try:
                    t = p.cpu_times()
                except psutil.Error:
                    continue
                used = t.user + t.system + t.children_user + t.children_system
                busy += used - seen.get(p.pid, used)
                seen[p.pid] = used
            quiet = quiet + 1 if busy < 0.05 else 0
        if quiet < 3:
            print(f"the worker was still busy after {limit_s:.0f} s", file=sys.stderr)
        return time.monotonic() - started

    def api_procs(self) -> list[psutil.Process]:
        out = []
        for p in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                cmd = p.cmdline()
            except psutil.Error:
                continue
            if "api.cli" in cmd and "api" in cmd:
                out.append(p)
        return out

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def login(stack: Stack) -> httpx.Client:
    """An httpx client of the stack, signed in as the bench's admin."""
    client = httpx.Client(
        base_url=stack.url,
        timeout=httpx.Timeout(600, connect=10),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
    )
    r = client.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    client.headers["Authorization"] = f"Bearer {r.raise_for_status().json()['access_token']}"
    return client


def write_results(name: str, res: dict[str, Any]) -> Path:
    """Write a bench's results as ``tests/bench/results/<name>-<time>.json``."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{name}-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"results: {out}")
    return out


def _rss_anon(pid: int) -> int:
    """The anonymous part of a process's RSS, in bytes (Linux)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def _hwm(pid: int) -> int:
    """A process's peak RSS so far (VmHWM), in bytes (Linux): a peak between
    two samples is not missed."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def rss_parts(procs: list[psutil.Process]) -> dict[str, float]:
    """The summed RSS of ``procs`` now, and its anonymous part, in MiB."""
    rss = anon = 0
    for p in procs:
        try:
            rss += p.memory_info().rss
            anon += _rss_anon(p.pid) if sys.platform.startswith("linux") else 0
        except (psutil.Error, OSError):
            continue
    return {"rss_mb": rss / 2**20, "anon_mb": anon / 2**20}


class RssSampler(threading.Thread):
    """Samples the summed RSS of ``find()``'s processes, found again at every
    sample: an import's own child process lives about a second, and a rescan
    every two seconds (until 2026-12-03) missed it in most runs, so the
    tree's peak was reported without the process doing the import. The
    largest single process is its high-water mark (``VmHWM``)."""

    def __init__(self, find: Callable[[], list[psutil.Process]], interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.find = find
        self.procs = find()
        self.interval = interval
        self.max_single = 0
        self.max_total = 0
        self.max_pss_total = 0  # PSS: shared (copy-on-write) pages counted once
        # RSS's anonymous part (the process's own memory), apart from pages of
        # mapped files (shared libraries: shared with the other processes, and
        # as many as the page cache's folios make them, see docs/benchmarks.md)
        self.max_anon_total = 0
        self.pss = sys.platform.startswith("linux")
        self.samples = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            if self.samples:
                self.procs = self.find()
            total = pss_total = anon_total = 0
            for p in self.procs:
                try:
                    rss = p.memory_info().rss
                    pss = getattr(p.memory_full_info(), "pss", 0) if self.pss else 0
                    anon = _rss_anon(p.pid) if self.pss else 0
                    peak = _hwm(p.pid) if self.pss else rss
                except (psutil.Error, OSError):
                    continue
                total += rss
                pss_total += pss
                anon_total += anon
                self.max_single = max(self.max_single, rss, peak)
            self.max_total = max(self.max_total, total)
            self.max_pss_total = max(self.max_pss_total, pss_total)
            self.max_anon_total = max(self.max_anon_total, anon_total)
            self.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


# --------------------------------------------------------------------------- helpers


def dir_bytes(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(root, f)).st_size
    return total


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu,
        "ram_total_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "python": platform.python_version(),
        "polars": pl.__version__,
        "platform": platform.platform(),
        # other work on the box skews everything; recorded so a noisy run can be spotted
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as e:
        return f"({e})"


def start_py_spy(out: str, pid: int) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        print("py-spy not found; skipping the profile", file=sys.stderr)
        return None
    fmt = "speedscope" if out.endswith(".json") else "flamegraph"
    if out.endswith(".txt"):
        fmt = "raw"
    return subprocess.Popen(
        [exe, "record", "-o", out, "-f", fmt, "--pid", str(pid), "--subprocesses", "-r", "100"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


# --------------------------------------------------------------------------- main


class S3Server:
    """moto's S3 server in its own process on 127.0.0.1, with one bucket."""

    BUCKET = "dsa-bench"
    PREFIX = "bench"

    def __init__(
        self, proc: subprocess.Popen[bytes], endpoint: str, log_path: Path | None = None
    ) -> None:
        self.proc, self.endpoint = proc, endpoint
        self.log_path = log_path  # moto's access log: one line a request
        self.env = {
            "DSA_STORAGE_URL": f"s3://{self.BUCKET}/{self.PREFIX}",
            "DSA_S3_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_REGION": "us-east-1",
        }

    @classmethod
    def start(cls, tmp: Path) -> S3Server:
        port = free_port()
        log = open(tmp / "moto.log", "ab")  # noqa: SIM115 - the server keeps it; its access log
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("moto_server")),
                "-H",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.put(f"{endpoint}/{cls.BUCKET}", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.2)
        atexit.register(proc.terminate)
        return cls(proc, endpoint, tmp / "moto.log")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def client(self) -> Any:
        """A boto3 client of this server, with the bench's credentials."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench-secret",
            config=Config(s3={"addressing_style": "path"}),
        )

    def bytes_under(self, kind: str) -> int:
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.BUCKET, Prefix=f"{self.PREFIX}/{kind}")
        )
        return sum(o["Size"] for page in pages for o in page.get("Contents", []))


def run(args: argparse.Namespace, tmp: Path, res: dict[str, Any]) -> bool:
    rows = args.rows
    csv = tmp / "bench.csv"

    t0 = time.perf_counter()
    generate_csv(csv, rows)
    csv_bytes = csv.stat().st_size
    csv_mb = csv_bytes / 1e6
    print(f"CSV: {rows:,} rows x 12 columns, {csv_mb:.1f} MB ({time.perf_counter() - t0:.1f} s)")
    res["csv"] = {"rows": rows, "columns": 12, "bytes": csv_bytes}

    floor_s, floor_bytes = measure_floor(csv, tmp)
    # the floor of record is the plain call; the date-parsing variant is for context
    floor_dates_s, _ = measure_floor(csv, tmp, parse_dates=True)
    res["floor"] = {
        "seconds": floor_s,
        "rows_per_s": rows / floor_s,
        "with_date_parsing_seconds": floor_dates_s,
        "parquet_bytes": floor_bytes,
    }
    print(
        f"floor (polars read_csv + write_parquet zstd): {floor_s:.2f} s, "
        f"{rows / floor_s:,.0f} rows/s"
    )

    home = tmp / "home"
    port = free_port()
    s3 = S3Server.start(tmp) if args.storage == "s3" else None
    res["storage_backend"] = args.storage
    stack = Stack(home, port, extra_env=s3.env if s3 else None)
    res["home"] = str(home)
    try:
        stack.wait_ready(120)
        print(f"stack up at {stack.url} (home {home})")
        client = httpx.Client(base_url=stack.url, timeout=httpx.Timeout(600, connect=10))
        r = client.post(
            "/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
        )
        r.raise_for_status()
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        r = client.post("/api/v1/datasets", json={"name": f"bench-{int(time.time())}"})
        r.raise_for_status()
        ds = r.json()["id"]

        workers = stack.worker_procs()
        res["worker_pids"] = [p.pid for p in workers]
        sampler = RssSampler(stack.worker_procs)
        api_sampler = RssSampler(stack.api_procs)
        # baseline RSS before the import
        base_total = sum(p.memory_info().rss for p in workers if p.is_running())
        sampler.start()
        api_sampler.start()
        spy = None
        if args.py_spy:
            main_worker = next(p for p in workers if "api.cli" in p.cmdline())
            spy = start_py_spy(args.py_spy, main_worker.pid)
            time.sleep(1.0)  # let py-spy attach before the clock starts

        # ---- import, end to end
        t_start = time.perf_counter()
        wall_start = time.time()
        with csv.open("rb") as fh:
            r = client.post(
                f"/api/v1/datasets/{ds}/refs/main/uploads",
                files={"file": ("bench.csv", fh, "text/csv")},
                data={"message": "bench import"},
            )
        t_uploaded = time.perf_counter()
        if r.status_code != 202:
            res["import"] = {"state": "upload_failed", "status": r.status_code, "body": r.text}
            print(f"upload failed: {r.status_code} {r.text}", file=sys.stderr)
            return False
        job_id = r.json()["job_id"]
        job: dict[str, Any] = {}
        t_started = None
        while True:
            job = client.get(f"/api/v1/jobs/{job_id}").json()
            if t_started is None and job.get("state") == "running":
                t_started = time.perf_counter()
            if job.get("state") in ("succeeded", "failed", "cancelled"):
                break
            if time.perf_counter() - t_start > args.timeout:
                job["state"] = f"timeout ({job.get('state')})"
                break
            # a gentle client: polling harder only steals CPU from the worker
            time.sleep(0.1)
        t_end = time.perf_counter()
        sampler.stop()
        api_sampler.stop()
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            try:
                _, err = spy.communicate(timeout=60)
                if spy.returncode:
                    print(f"py-spy: {err.decode(errors='replace')[-2000:]}", file=sys.stderr)
                else:
                    print(f"py-spy profile: {args.py_spy}")
            except subprocess.TimeoutExpired:
                spy.kill()

        polled = t_end - t_start
        elapsed = polled
        if job.get("finished_at"):
            # end to end = from the first byte of the upload to the job's own
            # finish time (same machine, same clock), not to when a poll saw it
            finished = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00"))
            elapsed = finished.timestamp() - wall_start
        res["import"] = {
            "state": job.get("state"),
            "job_id": job_id,
            "seconds": elapsed,
            "seconds_until_poll_saw_it": polled,
            "upload_seconds": t_uploaded - t_start,
            "queued_until_running_seen_s": (t_started - t_uploaded) if t_started else None,
            "rows_per_s": rows / elapsed,
            "mb_per_s": csv_mb / elapsed,
            "ratio_to_floor": elapsed / floor_s,
            "job": job,
        }
        res["worker_rss"] = {
            "baseline_total_bytes": base_total,
            "peak_single_bytes": sampler.max_single,
            "peak_total_bytes": sampler.max_total,
            "peak_total_pss_bytes": sampler.max_pss_total,
            "samples": sampler.samples,
        }
        res["api_rss"] = {"peak_total_bytes": api_sampler.max_total}
        ok = job.get("state") == "succeeded"
        print(
            f"import: {job.get('state')} in {elapsed:.2f} s (upload {t_uploaded - t_start:.2f} s)"
        )
        if not ok:
            print(f"job error: {json.dumps(job.get('error'), indent=2)}", file=sys.stderr)
            print(
                f"--- {home}/logs/worker.log (tail)\n{tail(home / 'logs' / 'worker.log')}",
                file=sys.stderr,
            )
            return False

        # ---- storage
        chunks = s3.bytes_under("chunks/") if s3 else dir_bytes(home / "objects" / "chunks")
        res["storage"] = {
            "chunks_bytes": chunks,
            "objects_bytes": dir_bytes(home / "objects"),
            "ratio_to_csv": chunks / csv_bytes,
        }

        # ---- page latency: after the import's writes have settled (the issue
        # asks for pages of an old commit, not of one whose files are still
        # being written back), first over cold row groups, then again warm
        os.sync()
        time.sleep(2.0)
        # and the work the new version set off (statistics) is done: pages of
        # a quiet stack, as in bench_scale.py
        res["settled_s"] = stack.wait_idle(120)
        commit = job["commit_id"]
        rng = random.Random(SEED)
        offsets = [rng.randint(0, max(rows - 100, 0)) for _ in range(200)]
        url = f"/api/v1/datasets/{ds}/refs/{commit}/data"
        for off in (0, rows // 2, max(rows - 100, 0), 12_345 % max(rows, 1), 7):
            client.get(url, params={"offset": off, "limit": 100}).raise_for_status()
        lat = []
        for off in offsets:
            t = time.perf_counter()
            r = client.get(url, params={"offset": off, "limit": 100})
            lat.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
            body = r.json()
            assert len(body["rows"]) == min(100, rows - off), (off, len(body["rows"]))
        warm = []
        for off in offsets:
            t = time.perf_counter()
            client.get(url, params={"offset": off, "limit": 100}).raise_for_status()
            warm.append((time.perf_counter() - t) * 1000)
        res["pages_warm"] = {
            "p50_ms": percentile(warm, 0.50),
            "p95_ms": percentile(warm, 0.95),
        }
        res["pages"] = {
            "n": len(lat),
            "limit": 100,
            "p50_ms": percentile(lat, 0.50),
            "p95_ms": percentile(lat, 0.95),
            "p99_ms": percentile(lat, 0.99),
            "mean_ms": statistics.fmean(lat),
            "max_ms": max(lat),
        }
        client.close()
        return True
    finally:
        stack.stop()
        res["stack_exit_code"] = stack.proc.returncode


def report(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(
        f"\nmachine: {m['nproc']} CPUs ({m['cpu_model']}), {m['ram_total_gb']} GB RAM, "
        f"Python {m['python']}, polars {m['polars']}"
    )
    rows: list[tuple[str, str, str]] = []
    csv_mb = res["csv"]["bytes"] / 1e6
    rows.append(("CSV", f"{res['csv']['rows']:,} rows x 12 cols, {csv_mb:.1f} MB", ""))
    fl = res["floor"]
    rows.append(
        (
            "floor (read_csv + parquet zstd)",
            f"{fl['seconds']:.2f} s, {fl['rows_per_s']:,.0f} rows/s",
            "",
        )
    )
    imp = res.get("import")
    tg = TARGETS

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    if imp and "seconds" in imp:
        rows.append(("import state", str(imp["state"]), ""))
        rows.append(
            (
                "import end to end",
                f"{imp['seconds']:.2f} s (upload {imp['upload_seconds']:.2f} s)",
                "",
            )
        )
        rows.append(
            (
                "import rows/s",
                f"{imp['rows_per_s']:,.0f}",
                f">= {tg['import_rows_per_s']:,}: "
                f"{verdict(imp['rows_per_s'] >= tg['import_rows_per_s'])}",
            )
        )
        rows.append(("import MB/s", f"{imp['mb_per_s']:.1f}", ""))
        rows.append(
            (
                "ratio to floor",
                f"{imp['ratio_to_floor']:.2f}x",
                f"<= {tg['ratio_to_floor']}x: "
                f"{verdict(imp['ratio_to_floor'] <= tg['ratio_to_floor'])}",
            )
        )
        w = res["worker_rss"]
        rows.append(
            (
                "worker peak RSS (tree total)",
                f"{w['peak_total_bytes'] / 1024**2:,.0f} MiB",
                f"<= 1 GiB: {verdict(w['peak_total_bytes'] <= tg['worker_peak_rss_bytes'])}",
            )
        )
        rows.append(
            ("worker peak PSS (tree total)", f"{w['peak_total_pss_bytes'] / 1024**2:,.0f} MiB", "")
        )
        rows.append(
            ("worker peak RSS (max process)", f"{w['peak_single_bytes'] / 1024**2:,.0f} MiB", "")
        )
    if "storage" in res:
        st = res["storage"]
        rows.append(
            (
                "storage (objects/chunks)",
                f"{st['chunks_bytes'] / 1e6:.1f} MB = {st['ratio_to_csv'] * 100:.1f} % of CSV",
                f"(floor Parquet: {res['floor']['parquet_bytes'] / 1e6:.1f} MB)",
            )
        )
    if "pages" in res:
        pg = res["pages"]
        rows.append(
            (
                "page p50 / p95 / p99 (limit 100, cold)",
                f"{pg['p50_ms']:.1f} / {pg['p95_ms']:.1f} / {pg['p99_ms']:.1f} ms",
                f"p95 <= {tg['page_p95_ms']:.0f} ms: {verdict(pg['p95_ms'] <= tg['page_p95_ms'])}",
            )
        )
    if "pages_warm" in res:
        pw = res["pages_warm"]
        rows.append(
            (
                "page p50 / p95 (same offsets, warm)",
                f"{pw['p50_ms']:.1f} / {pw['p95_ms']:.1f} ms",
                "",
            )
        )
    try:
        from rich.console import Console
        from rich.table import Table

        t = Table(title="DSA import benchmark")
        t.add_column("metric")
        t.add_column("value", justify="right")
        t.add_column("target")
        for r in rows:
            t.add_row(*r)
        Console().print(t)
    except ImportError:
        w0 = max(len(r[0]) for r in rows)
        for name, val, target in rows:
            print(f"{name:<{w0}}  {val}  {target}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (CSV, DSA home, logs)")
    ap.add_argument("--timeout", type=float, default=1800, help="give up on the job after N s")
    ap.add_argument("--py-spy", metavar="OUT", help="profile the worker tree into OUT (.svg)")
    ap.add_argument(
        "--storage",
        choices=["file", "s3"],
        default="file",
        help="s3: the stack's objects in a bucket of a local S3 server (moto, its own process)",
    )
    args = ap.parse_args()

    res: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "targets": TARGETS,
    }
    m = res["machine"]
    print(
        f"machine: nproc={m['nproc']} cpu={m['cpu_model']!r} ram={m['ram_total_gb']} GB "
        f"python={m['python']} loadavg={m['loadavg_at_start']}"
    )
    tmp = Path(tempfile.mkdtemp(prefix="dsa-bench-"))
    ok = False
    try:
        ok = run(args, tmp, res)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    except Exception as e:  # report what we have, then fail
        res["error"] = repr(e)
        print(f"benchmark error: {e!r}", file=sys.stderr)
        wl = tmp / "home" / "logs" / "worker.log"
        if wl.exists():
            print(f"--- {wl} (tail)\n{tail(wl)}", file=sys.stderr)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    res["ok"] = ok
    res["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if "floor" in res:
        report(res)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = RESULTS_DIR / f"import-{stamp}.json"
    out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(f"results: {out.relative_to(REPO)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

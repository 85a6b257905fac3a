"""Export throughput of the 1M-row table over HTTP, and the API's memory.

Run: ``.venv/bin/python tests/bench/bench_exports.py`` (part of ``make bench``);
``--big-rows 35000000`` adds the large export (default 0: skipped).

Same seeded table as bench_import.py (1,000,000 rows × 12 columns, 141 MB as
CSV), imported into an embedded stack (``dsa up``). For each format, ``--runs``
times: ``GET …/refs/<commit id>/export?format=…`` streamed by one httpx
client on the same machine, body read and discarded. Measured per request:

- **first byte**: from sending the request to the first body bytes;
- **seconds**, **MB/s** (bytes of the file sent, 10^6) and **rows/s**;
- **API peak RSS**: the API process (``api.cli api``), sampled every 50 ms,
  in MiB (2^20 bytes) and MB (10^6; the issue's "< 300 MB" is in these);
- **API CPU**: CPU seconds the API process spent on the request (user +
  system): on a shared machine a steadier figure than the wall time;
- **load**: the 1-minute load average when the request starts and ends
  (2 CPUs here: above ~1 other work competes, compare with the floor).

Parquet is measured cold (the first request of an export: encoded while
streamed and stored) and warm (served from the stored file). The floor, in the
same run: polars reads the table as Parquet and writes CSV (``write_csv``).

``--big-rows N``: a second table of N rows built by appending the same 1M-row
file N/1M times (appends re-use the chunks, so it costs little storage), then
exported as CSV once while the API's RSS is sampled (35M rows ≈ 5 GB of CSV).

Writes ``tests/bench/results/exports-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_formats import upload  # noqa: E402
from tests.bench.bench_import import (  # noqa: E402
    ADMIN_PASSWORD,
    ADMIN_USER,
    RESULTS_DIR,
    RssSampler,
    Stack,
    free_port,
    generate_csv,
    machine,
    rss_parts,
)

TARGETS = {
    "csv_mb_s": 200,
    "csv_first_byte_ms": 50,
    "parquet_warm_mb_s": 500,
    "big_csv_rss_1e6": 300e6,
}
FORMATS = ["csv", "parquet", "ndjson", "xlsx", "arrow", "tsv"]


def _api_cpu(stack: Stack) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in stack.api_procs())


def export_once(client: httpx.Client, stack: Stack, url: str, rows: int) -> dict[str, Any]:
    idle = rss_parts(stack.api_procs())
    rss = RssSampler(stack.api_procs, interval=0.05)
    rss.start()
    size = 0
    load0 = os.getloadavg()[0]
    cpu0 = _api_cpu(stack)
    t0 = time.perf_counter()
    first = None
    with client.stream("GET", url) as r:
        r.raise_for_status()
        for part in r.iter_raw():  # as it arrives (a chunk size would buffer)
            if first is None:
                first = time.perf_counter()
            size += len(part)
    dt = time.perf_counter() - t0
    cpu = _api_cpu(stack) - cpu0
    rss.stop()
    return {
        "seconds": dt,
        "first_byte_ms": ((first or t0) - t0) * 1000,
        "bytes": size,
        "mb_s": size / dt / 1e6,
        "rows_s": rows / dt,
        "api_peak_rss_mb": rss.max_total / 2**20,  # MiB (the key's name is kept for old results)
        "api_peak_rss_1e6": rss.max_total / 1e6,
        "api_peak_anon_mb": rss.max_anon_total / 2**20,  # of which anonymous (no file pages)
        "api_idle_rss_mb": idle["rss_mb"],  # before the request
        "api_idle_anon_mb": idle["anon_mb"],
        "api_cpu_s": cpu,
        "load": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--big-rows", type=int, default=0, help="also export a table this long")
    ap.add_argument("--formats", default=",".join(FORMATS))
    args = ap.parse_args()
    res: dict[str, Any] = {
        "machine": machine(),
        "started_at": datetime.now().isoformat(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    formats = args.formats.split(",")
    with tempfile.TemporaryDirectory(prefix="dsa-bench-exports-") as d:
        tmp = Path(d)
        csv = tmp / "bench.csv"
        df = generate_csv(csv, args.rows)
        pq_path = tmp / "bench.parquet"
        df.write_parquet(pq_path, compression="zstd")
        del df
        t = time.perf_counter()
        pl.read_parquet(pq_path).write_csv(tmp / "floor.csv")
        floor_s = time.perf_counter() - t
        floor_bytes = (tmp / "floor.csv").stat().st_size
        res["floor"] = {"seconds": floor_s, "mb_s": floor_bytes / floor_s / 1e6}
        print(
            f"floor: polars Parquet → CSV {floor_s:.2f} s, {floor_bytes / floor_s / 1e6:.0f} MB/s"
            f" (load {os.getloadavg()[0]:.2f})"
        )

        stack = Stack(tmp / "home", free_port())
        try:
            stack.wait_ready(120)
            client = httpx.Client(base_url=stack.url, timeout=httpx.Timeout(1800, connect=10))
            r = client.post(
                "/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
            )
            client.headers["Authorization"] = (
                f"Bearer {r.raise_for_status().json()['access_token']}"
            )
            r = client.post("/api/v1/datasets", json={"name": f"exports-{time.time_ns()}"})
            ds = r.raise_for_status().json()["id"]
            job = upload(client, ds, csv, "bench.csv")["job"]
            commit = job["commit_id"]
            base = f"/api/v1/datasets/{ds}/refs/{commit}/export?table=bench"
            time.sleep(1)
            res["api_idle_rss_mb"] = sum(p.memory_info().rss for p in stack.api_procs()) / 2**20
            print(f"API RSS before exports: {res['api_idle_rss_mb']:.0f} MiB")
            results: dict[str, list[dict[str, Any]]] = {}
            for fmt in formats:
                runs = []
                for k in range(args.runs + (1 if fmt == "parquet" else 0)):
                    one = export_once(client, stack, f"{base}&format={fmt}", args.rows)
                    label = fmt
                    if fmt == "parquet":
                        label = "parquet (cold)" if k == 0 else "parquet (stored)"
                    results.setdefault(label, []).append(one)
                    runs.append(one)
                    print(
                        f"{label:17} {one['seconds']:6.2f} s {one['mb_s']:7.1f} MB/s "
                        f"{one['rows_s']:>10,.0f} rows/s first byte {one['first_byte_ms']:6.1f} ms "
                        f"{one['bytes'] / 1e6:7.1f} MB  API RSS {one['api_peak_rss_mb']:.0f} MiB "
                        f"({one['api_peak_rss_1e6']:.0f} MB), CPU {one['api_cpu_s']:.2f} s, "
                        f"load {one['load'][0]:.2f} → {one['load'][1]:.2f}"
                    )
            res["exports"] = results
            if args.big_rows:
                ds2 = (
                    client.post("/api/v1/datasets", json={"name": f"exports-big-{time.time_ns()}"})
                    .raise_for_status()
                    .json()["id"]
                )
                t = time.perf_counter()
                job = {}
                for k in range(max(args.big_rows // args.rows, 1)):
                    with csv.open("rb") as fh:
                        r = client.post(
                            f"/api/v1/datasets/{ds2}/refs/main/uploads",
                            files={"file": ("bench.csv", fh)},
                            data={"mode": "append" if k else "replace"},
                        )
                    job_id = r.raise_for_status().json()["job_id"]
                    while (job := client.get(f"/api/v1/jobs/{job_id}").json())["state"] in (
                        "queued",
                        "running",
                    ):
                        time.sleep(0.2)
                    assert job["state"] == "succeeded", job
                build_s = time.perf_counter() - t
                rows = client.get(f"/api/v1/datasets/{ds2}/refs/main/tables").json()["items"][0][
                    "row_count"
                ]
                print(f"big table: {rows:,} rows built in {build_s:.0f} s")
                url = f"/api/v1/datasets/{ds2}/refs/{job['commit_id']}/export?format=csv"
                big = export_once(client, stack, url, rows)
                big["rows"] = rows
                res["big_csv"] = big
                print(
                    f"big csv: {big['bytes'] / 1e9:.2f} GB in {big['seconds']:.1f} s "
                    f"({big['mb_s']:.0f} MB/s), first byte {big['first_byte_ms']:.0f} ms, "
                    f"API peak RSS {big['api_peak_rss_mb']:.0f} MiB "
                    f"({big['api_peak_rss_1e6']:.0f} MB), CPU {big['api_cpu_s']:.0f} s, "
                    f"load {big['load'][0]:.2f} → {big['load'][1]:.2f}"
                )
        finally:
            stack.stop()
    print("\nmedians:")
    summary = {}
    for label, runs in res.get("exports", {}).items():
        summary[label] = {
            k: round(median(runs, k), 1)
            for k in (
                "seconds",
                "mb_s",
                "rows_s",
                "first_byte_ms",
                "api_peak_rss_mb",
                "api_peak_rss_1e6",
                "api_cpu_s",
            )
        }
        print(f"  {label:17} {summary[label]}")
    res["summary"] = summary
    checks = []
    if "csv" in summary:
        checks.append(("csv MB/s ≥ 200", summary["csv"]["mb_s"] >= TARGETS["csv_mb_s"]))
        checks.append(
            (
                "csv first byte ≤ 50 ms",
                summary["csv"]["first_byte_ms"] <= TARGETS["csv_first_byte_ms"],
            )
        )
    if "parquet (stored)" in summary:
        checks.append(
            (
                "stored parquet MB/s ≥ 500",
                summary["parquet (stored)"]["mb_s"] >= TARGETS["parquet_warm_mb_s"],
            )
        )
    if "big_csv" in res:
        checks.append(
            (
                "big csv API RSS < 300 MB",
                res["big_csv"]["api_peak_rss_1e6"] < TARGETS["big_csv_rss_1e6"],
            )
        )
    for name, ok in checks:
        print(f"  target {name}: {'met' if ok else 'NOT met'}")
    res["targets"] = dict(checks)
    res["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"exports-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(res, indent=2))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

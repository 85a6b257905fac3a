"""Import throughput by format, and what a re-upload costs.

Run: ``.venv/bin/python tests/bench/bench_formats.py`` (part of ``make bench``).

Same seeded table as bench_import.py. In one embedded stack, end to end (first
byte of the upload to the job's ``finished_at``):

- Parquet, ``--rows`` rows (written by polars, zstd);
- xlsx, ``--xlsx-rows`` rows, one sheet (written once with xlsxwriter and kept
  in ``results/cache/``: a 1M-row workbook takes minutes to write);
- CSV re-uploads of the whole table into one branch, ``--versions`` times:
  each version is the previous one with 1 % of its rows updated (a value of
  ``name`` changed), 0.5 % deleted and 0.5 % new rows inserted, all at random
  positions (seeded). For each: the time end to end, and the bytes it added to
  the object store (``objects/``; the upload itself and the caches, read copies
  and stored exports, excluded and reported apart) against what the
  store held after the first version; at the end, the store's total against
  the first version's bytes.

The floors, measured in the same run (wall time, same machine): polars
``read_csv`` + ``write_parquet``, ``read_parquet`` + ``write_parquet``, and
``read_excel`` (calamine through fastexcel).

``--only exact`` (in the default set): the Parquet table with ``price`` as
``decimal(12,2)``, ``discount`` as ``decimal(7,6)`` and ``created_at``'s
time of day as a ``time`` column (issue 17's exact types): its import, and
its CSV and Parquet exports, beside the same for the float table.

Targets (issue 3): Parquet >= 700,000 rows/s, xlsx >= 50,000 rows/s; a
re-upload committed in <= 1.5 s growing storage by <= 3 % of the first
version; after 10 versions <= 1.25x the first version's bytes.
"""

from __future__ import annotations

import argparse
import json
import random
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

from tests.bench.bench_import import (  # noqa: E402
    ADMIN_PASSWORD,
    ADMIN_USER,
    RESULTS_DIR,
    Stack,
    dir_bytes,
    free_port,
    generate_csv,
    machine,
    measure_floor,
    percentile,
)

CACHE_DIR = RESULTS_DIR / "cache"


def upload(
    client: httpx.Client, ds: str, path: Path, name: str, mode: str = "replace"
) -> dict[str, Any]:
    start = time.time()
    with path.open("rb") as fh:
        r = client.post(
            f"/api/v1/datasets/{ds}/refs/main/uploads",
            files={"file": (name, fh)},
            data={"mode": mode},
        )
    r.raise_for_status()
    job_id = r.json()["job_id"]
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
    if job["state"] != "succeeded":
        raise RuntimeError(f"{name}: {json.dumps(job.get('error'))}")

    def at(field: str) -> float:
        return datetime.fromisoformat(job[field].replace("Z", "+00:00")).timestamp()

    finished = at("finished_at")
    # where the time went: the upload request, waiting in the queue, the job
    phases = {
        "upload_s": at("created_at") - start,
        "queued_s": at("started_at") - at("created_at"),
        "run_s": finished - at("started_at"),
    }
    return {"seconds": finished - start, "job": job, "phases": phases}


def write_xlsx(df: pl.DataFrame, path: Path) -> None:
    """One sheet, typed cells (numbers, text, dates, date-times), nulls empty."""
    import xlsxwriter

    tmp = path.with_suffix(".tmp.xlsx")
    wb = xlsxwriter.Workbook(str(tmp), {"constant_memory": True})
    ws = wb.add_worksheet("data")
    date_fmt = wb.add_format({"num_format": "yyyy-mm-dd"})
    ts_fmt = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss.000"})
    ws.write_row(0, 0, df.columns)
    kinds = [str(t) for t in df.dtypes]
    for r, row in enumerate(df.iter_rows(), start=1):
        for c, v in enumerate(row):
            if v is None:
                continue
            if kinds[c] == "Date":
                ws.write_datetime(r, c, v, date_fmt)
            elif kinds[c].startswith("Datetime"):
                ws.write_datetime(r, c, v, ts_fmt)
            else:
                ws.write(r, c, v)
    wb.close()
    tmp.rename(path)


def edit(df: pl.DataFrame, rnd: random.Random, next_id: int) -> tuple[pl.DataFrame, int]:
    """The issue's re-upload: 1 % of rows updated, 0.5 % deleted, 0.5 % inserted
    (copies of other rows under new ids), at random positions. ``df`` is text."""
    n = df.height
    gone = set(rnd.sample(range(n), n // 200))
    updated = rnd.sample([i for i in range(n) if i not in gone], n // 100)
    names = df.get_column("name").to_list()
    for i in updated:
        names[i] = f"{names[i]}-v{next_id}"
    df = df.with_columns(
        pl.Series("name", names), ord=pl.int_range(pl.len(), dtype=pl.Int64) * 2
    ).filter(~pl.col("ord").is_in([2 * i for i in gone]))
    k = n // 200
    new = df.sample(k, seed=rnd.randrange(1 << 30)).with_columns(
        id=pl.int_range(next_id, next_id + k, eager=True).cast(pl.Utf8),
        ord=pl.Series([2 * rnd.randrange(n) + 1 for _ in range(k)]),
    )
    return pl.concat([df, new]).sort("ord").drop("ord"), next_id + k


def write_versions(csv: Path, rows: int, count: int, out: Path, *, first: int = 1) -> list[Path]:
    """``count`` successive re-uploads of the CSV (``edit``, seeded), written
    as ``out/v<first>.csv``, ``v<first + 1>.csv``…"""
    text = pl.read_csv(csv, infer_schema=False)
    rnd, next_id = random.Random(11), rows
    paths = []
    for v in range(count):
        text, next_id = edit(text, rnd, next_id)
        paths.append(out / f"v{v + first}.csv")
        text.write_csv(paths[-1])
    return paths


def page_latency(client: httpx.Client, ds: str, commit: str, rows: int) -> dict[str, float]:
    """p50/p95 ms of 100 random pages of 100 rows (cold: first read of each)."""
    url = f"/api/v1/datasets/{ds}/refs/{commit}/data"
    client.get(url, params={"offset": 0, "limit": 100}).raise_for_status()  # manifest loaded
    rng = random.Random(3)
    lat = []
    for _ in range(100):
        t = time.perf_counter()
        client.get(
            url, params={"offset": rng.randrange(rows - 100), "limit": 100}
        ).raise_for_status()
        lat.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": percentile(lat, 0.5), "p95_ms": percentile(lat, 0.95)}


CACHES = ("uploads", "layouts", "exports", "lines")


def store_bytes(home: Path) -> int:
    """The versioned objects' bytes: the object store without uploads awaiting
    import and without its caches (read copies, ``layouts/``, decision 0016;
    stored exports, ``exports/``; line indexes, ``lines/``), which are
    reported apart."""
    objects = home / "objects"
    return dir_bytes(objects) - sum(dir_bytes(objects / sub) for sub in CACHES)


def cache_bytes(home: Path) -> int:
    """The read copies' bytes (a cache under ``DSA_LAYOUT_CACHE_BYTES``)."""
    return dir_bytes(home / "objects" / "layouts")


def timed(fn: Any) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def exact_types(
    client: httpx.Client, dataset: Any, floats: Path, exact: Path, rows: int
) -> dict[str, Any]:
    """The float table and the exact one: import, then CSV and Parquet
    exports (the median of three each, the second and later from the stored
    Parquet export or the chunks)."""
    out: dict[str, Any] = {}
    for label, path in (("float", floats), ("exact", exact)):
        ds = dataset(label)
        got = upload(client, ds, path, f"{label}.parquet")
        times: dict[str, float] = {"import_s": got["seconds"]}
        for fmt in ("csv", "parquet"):
            runs = []
            for _ in range(3):
                t = time.perf_counter()
                with client.stream(
                    "GET", f"/api/v1/datasets/{ds}/refs/main/export", params={"format": fmt}
                ) as r:
                    size = sum(len(b) for b in r.raise_for_status().iter_bytes())
                runs.append(time.perf_counter() - t)
            times[f"{fmt}_export_s"] = round(statistics.median(runs), 3)
            times[f"{fmt}_bytes"] = size
        out[label] = {"rows": rows, **times}
        print(label, json.dumps(out[label]), flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--xlsx-rows", type=int, default=1_000_000)
    ap.add_argument("--versions", type=int, default=10, help="re-uploads after the first")
    ap.add_argument("--only", choices=["parquet", "xlsx", "reupload", "exact"], action="append")
    args = ap.parse_args()
    only = set(args.only or ["parquet", "xlsx", "reupload", "exact"])
    res: dict[str, Any] = {"machine": machine(), "started_at": datetime.now().isoformat()}
    with tempfile.TemporaryDirectory(prefix="dsa-bench-formats-") as d:
        tmp = Path(d)
        csv = tmp / "bench.csv"
        df = generate_csv(csv, args.rows)
        parquet = tmp / "bench.parquet"
        df.write_parquet(parquet, compression="zstd")
        exact = tmp / "exact.parquet"
        df.with_columns(
            pl.col("price").cast(pl.Decimal(12, 2)),
            pl.col("discount").cast(pl.Decimal(7, 6)),
            pl.col("created_at").dt.time().alias("at"),
        ).write_parquet(exact, compression="zstd")
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        xlsx = CACHE_DIR / f"bench-{args.xlsx_rows}.xlsx"
        if "xlsx" in only and not xlsx.exists():
            t = time.perf_counter()
            write_xlsx(df.head(args.xlsx_rows), xlsx)
            print(f"xlsx written in {time.perf_counter() - t:.0f} s (cached: {xlsx})")
        versions: list[Path] = []
        if "reupload" in only:
            versions = write_versions(csv, args.rows, args.versions, tmp)
        del df
        # floors, same run
        floors: dict[str, float] = {}
        floors["csv"], _ = measure_floor(csv, tmp)
        floors["parquet"] = timed(
            lambda: pl.read_parquet(parquet).write_parquet(tmp / "f.parquet", compression="zstd")
        )
        if "xlsx" in only:
            floors["xlsx"] = timed(lambda: pl.read_excel(xlsx, engine="calamine"))
        res["floors_s"] = floors
        print("floors:", {k: round(v, 2) for k, v in floors.items()})

        stack = Stack(tmp / "home", free_port())
        try:
            stack.wait_ready(120)
            client = httpx.Client(base_url=stack.url, timeout=httpx.Timeout(600, connect=10))
            r = client.post(
                "/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
            )
            client.headers["Authorization"] = (
                f"Bearer {r.raise_for_status().json()['access_token']}"
            )

            def dataset(name: str) -> str:
                r = client.post("/api/v1/datasets", json={"name": f"{name}-{time.time_ns()}"})
                return str(r.raise_for_status().json()["id"])

            if "reupload" in only:
                # first, in the fresh store: the Parquet and xlsx tables hold the same
                # rows and would make the same chunks
                home = tmp / "home"
                base = store_bytes(home)
                ds = dataset("reupload")
                first = upload(client, ds, csv, "bench.csv")
                time.sleep(0.5)
                first_bytes = store_bytes(home) - base
                steps = []
                for path in versions:
                    before = store_bytes(home)
                    got = upload(client, ds, path, "bench.csv")
                    time.sleep(0.5)  # the upload object is deleted just after the job ends
                    steps.append(
                        {
                            "seconds": got["seconds"],
                            "phases": got["phases"],
                            "parsed_rows": got["job"]["result"].get("parsed_rows"),
                            "line_index_bytes": dir_bytes(home / "objects" / "lines"),
                            "read_copy_bytes": cache_bytes(home),
                            "added_bytes": store_bytes(home) - before,
                            "table_rows": got["job"]["result"].get("table_rows"),
                            "commit_id": got["job"]["commit_id"],
                        }
                    )
                pages = page_latency(client, ds, first["job"]["commit_id"], args.rows)
                if versions:
                    last = steps[-1]["commit_id"]
                    pages_last = page_latency(client, ds, last, steps[-1]["table_rows"])
                res["reupload"] = {
                    "pages_first_version": pages,
                    "pages_last_version": pages_last if versions else None,
                    "rows": args.rows,
                    "first_seconds": first["seconds"],
                    "first_bytes": first_bytes,
                    "versions": steps,
                    "total_bytes": store_bytes(home) - base,
                }
            if "parquet" in only:
                got = upload(client, dataset("parquet"), parquet, "bench.parquet")
                res["parquet"] = {"rows": args.rows, "seconds": got["seconds"]}
            if "xlsx" in only:
                got = upload(client, dataset("xlsx"), xlsx, "bench.xlsx")
                res["xlsx"] = {"rows": args.xlsx_rows, "seconds": got["seconds"]}
            if "exact" in only:
                res["exact"] = exact_types(client, dataset, parquet, exact, args.rows)
        finally:
            stack.stop()

    print(f"\nmachine: {res['machine']['nproc']} CPUs, Python {res['machine']['python']}")
    for fmt, target in (("parquet", 700_000), ("xlsx", 50_000)):
        if fmt not in res:
            continue
        got = res[fmt]
        got["rows_per_s"] = rate = got["rows"] / got["seconds"]
        print(
            f"{fmt:8} {got['rows']:>9,} rows  {got['seconds']:6.2f} s {rate:>10,.0f} rows/s "
            f"(target >= {target:,}: {'met' if rate >= target else 'NOT met'}; "
            f"floor {floors[fmt]:.2f} s)"
        )
    if "reupload" in res:
        ru = res["reupload"]
        fb = ru["first_bytes"]
        print(
            f"first CSV version: {ru['first_seconds']:.2f} s, {fb / 1e6:.1f} MB stored "
            f"(floor read_csv + write_parquet {floors['csv']:.2f} s)"
        )
        for i, step in enumerate(ru["versions"], start=1):
            print(
                f"  v{i + 1}: {step['seconds']:5.2f} s  +{step['added_bytes'] / 1e6:5.2f} MB "
                f"({100 * step['added_bytes'] / fb:4.2f} % of the first version); "
                + ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in step["phases"].items())
                + f"; rows parsed {step['parsed_rows']}, line index "
                f"{step['line_index_bytes'] / 1e6:.1f} MB, read copies "
                f"{step.get('read_copy_bytes', 0) / 1e6:.1f} MB (caches, not in the figure)"
            )
        secs = [s["seconds"] for s in ru["versions"]]
        v2 = ru["versions"][0] if ru["versions"] else None
        ru["median_seconds"] = statistics.median(secs) if secs else None
        ru["ratio_total_to_first"] = ru["total_bytes"] / fb
        if v2 is not None:
            print(
                f"re-upload (v2): {v2['seconds']:.2f} s (target <= 1.5 s: "
                f"{'met' if v2['seconds'] <= 1.5 else 'NOT met'}), median over versions "
                f"{ru['median_seconds']:.2f} s; +{100 * v2['added_bytes'] / fb:.2f} % "
                f"(target <= 3 %: {'met' if v2['added_bytes'] <= 0.03 * fb else 'NOT met'})"
            )
        print(
            f"store after {len(secs) + 1} versions: {ru['total_bytes'] / 1e6:.1f} MB = "
            f"{ru['ratio_total_to_first']:.3f}x the first version (target <= 1.25x after 10 "
            f"re-uploads: {'met' if ru['ratio_total_to_first'] <= 1.25 else 'NOT met'})"
        )
        if ru["versions"]:
            copies = ru["versions"][-1].get("read_copy_bytes", 0)
            print(
                f"read copies after the last version: {copies / 1e6:.1f} MB "
                "(a cache under DSA_LAYOUT_CACHE_BYTES, decision 0016; not in the figure)"
            )
        for label in ("pages_first_version", "pages_last_version"):
            if ru.get(label):
                print(
                    f"{label.replace('_', ' ')}: p50 {ru[label]['p50_ms']:.1f} ms, "
                    f"p95 {ru[label]['p95_ms']:.1f} ms (100 random pages of 100 rows, cold)"
                )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"formats-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(res, indent=2, default=str))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Import throughput by format, and what a re-upload costs.

Run: ``.venv/bin/python tests/bench/bench_formats.py`` (part of ``make bench``).

Same seeded table as bench_import.py. In one embedded stack, end to end (first
byte of the upload to the job's ``finished_at``):

- Parquet, 1,000,000 rows (written by polars, zstd);
- xlsx, ``--xlsx-rows`` rows (default 100,000: writing a 1M-row workbook with
  openpyxl takes minutes), one sheet;
- CSV re-upload with 1 % of rows edited at random positions, into the same
  branch: time, and the bytes it added to the object store.

Targets (issue: import engine): Parquet >= 700,000 rows/s, xlsx >= 50,000 rows/s.
"""

from __future__ import annotations

import argparse
import json
import random
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
)


def upload(client: httpx.Client, ds: str, path: Path, name: str) -> dict[str, Any]:
    start = time.time()
    with path.open("rb") as fh:
        r = client.post(f"/api/v1/datasets/{ds}/refs/main/uploads", files={"file": (name, fh)})
    r.raise_for_status()
    job_id = r.json()["job_id"]
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(0.1)
    if job["state"] != "succeeded":
        raise RuntimeError(f"{name}: {json.dumps(job.get('error'))}")
    finished = datetime.fromisoformat(job["finished_at"].replace("Z", "+00:00")).timestamp()
    return {"seconds": finished - start, "job": job}


def write_xlsx(df: pl.DataFrame, path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("data")
    ws.append(df.columns)
    for row in df.iter_rows():
        ws.append(list(row))
    wb.save(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--xlsx-rows", type=int, default=100_000)
    args = ap.parse_args()
    res: dict[str, Any] = {"machine": machine(), "started_at": datetime.now().isoformat()}
    with tempfile.TemporaryDirectory(prefix="dsa-bench-formats-") as d:
        tmp = Path(d)
        csv = tmp / "bench.csv"
        generate_csv(csv, args.rows)
        df = pl.read_csv(csv, try_parse_dates=True)
        parquet = tmp / "bench.parquet"
        df.write_parquet(parquet, compression="zstd")
        xlsx = tmp / "bench.xlsx"
        t = time.perf_counter()
        write_xlsx(df.head(args.xlsx_rows), xlsx)
        print(f"inputs ready (xlsx written in {time.perf_counter() - t:.0f} s)")
        edited = tmp / "edited.csv"
        rnd = random.Random(11)
        names = df.get_column("name").to_list()
        for i in rnd.sample(range(df.height), df.height // 100):
            names[i] = f"{names[i]}-edited"
        pl.read_csv(csv, infer_schema=False).with_columns(pl.Series("name", names)).write_csv(
            edited
        )

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

            got = upload(client, dataset("parquet"), parquet, "bench.parquet")
            res["parquet"] = {"rows": args.rows, "seconds": got["seconds"]}
            got = upload(client, dataset("xlsx"), xlsx, "bench.xlsx")
            res["xlsx"] = {"rows": args.xlsx_rows, "seconds": got["seconds"]}

            ds = dataset("reupload")
            first = upload(client, ds, csv, "bench.csv")
            chunks = tmp / "home" / "objects" / "chunks"
            before = dir_bytes(chunks)
            again = upload(client, ds, edited, "bench.csv")
            res["reupload"] = {
                "rows": args.rows,
                "first_seconds": first["seconds"],
                "seconds": again["seconds"],
                "first_bytes": before,
                "added_bytes": dir_bytes(chunks) - before,
            }
        finally:
            stack.stop()

    pq_rate = res["parquet"]["rows"] / res["parquet"]["seconds"]
    xl_rate = res["xlsx"]["rows"] / res["xlsx"]["seconds"]
    ru = res["reupload"]
    print(f"\nmachine: {res['machine']['nproc']} CPUs, Python {res['machine']['python']}")
    print(
        f"parquet  {res['parquet']['rows']:>9,} rows  {res['parquet']['seconds']:6.2f} s "
        f"{pq_rate:>10,.0f} rows/s  (target >= 700,000: {'met' if pq_rate >= 7e5 else 'NOT met'})"
    )
    print(
        f"xlsx     {res['xlsx']['rows']:>9,} rows  {res['xlsx']['seconds']:6.2f} s "
        f"{xl_rate:>10,.0f} rows/s  (target >= 50,000: {'met' if xl_rate >= 5e4 else 'NOT met'})"
    )
    print(
        f"re-upload, 1 % of rows edited: {ru['seconds']:.2f} s (first upload "
        f"{ru['first_seconds']:.2f} s); storage +{ru['added_bytes'] / 1e6:.2f} MB on "
        f"{ru['first_bytes'] / 1e6:.1f} MB ({100 * ru['added_bytes'] / ru['first_bytes']:.1f} %)"
    )
    res["parquet"]["rows_per_s"] = pq_rate
    res["xlsx"]["rows_per_s"] = xl_rate
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"formats-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(res, indent=2, default=str))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

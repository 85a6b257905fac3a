"""Object storage against a local directory (issue 13): the same steps, the same run.

For each backend (``file://``, then ``s3://`` on a moto server started here),
one embedded stack on the seeded 1M-row × 12-column table of
``bench_import.py``:

1. the first import, end to end (upload to the job's finish);
2. a re-upload (1 % of rows updated, 0.5 % deleted, 0.5 % inserted, as
   ``bench_formats.py`` makes them) after a restart with the node's cache
   emptied (``DSA_CACHE_DIR``): the worker has read nothing of the store;
3. 100-row pages at 100 random offsets of the first (old) commit: cold
   (fresh processes, empty cache), then after a restart with the cache
   filled (fresh processes, warm disk cache), then again in the same
   process;
4. a CSV export of the new version, in MB/s;
5. ``polars.scan_parquet`` of a signed link to the stored Parquet export,
   whole and with a selective filter, with ``DSA_EXPORT_REDIRECT=true`` on
   S3: the bucket's GETs of the file are counted from the server's log.

    .venv/bin/python tests/bench/bench_s3.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_formats import upload, write_versions  # noqa: E402
from tests.bench.bench_import import (  # noqa: E402
    S3Server,
    Stack,
    free_port,
    generate_csv,
    login,
    machine,
    percentile,
    write_results,
)


def _pages(client: httpx.Client, ds: str, commit: str, offsets: list[int]) -> dict[str, float]:
    lat = []
    for off in offsets:
        t = time.perf_counter()
        client.get(
            f"/api/v1/datasets/{ds}/refs/{commit}/data", params={"offset": off, "limit": 100}
        ).raise_for_status()
        lat.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": percentile(lat, 0.5), "p95_ms": percentile(lat, 0.95), "max_ms": max(lat)}


def _gets_of(log: Path, start: int, kind: str) -> int:
    """GETs of ``kind`` objects in the S3 server's log since byte ``start``."""
    with log.open("rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    return sum(1 for line in text.splitlines() if "GET /" in line and f"/{kind}/" in line)


class Backend:
    def __init__(self, name: str, tmp: Path, extra_env: dict[str, str]) -> None:
        self.name, self.home, self.env = name, tmp / f"home-{name}", extra_env
        self.port = free_port()
        self.stack: Stack | None = None

    def start(self, *, empty_cache: bool = False) -> httpx.Client:
        if self.stack is not None:
            self.stack.stop()
        if empty_cache:
            shutil.rmtree(self.home / "cache", ignore_errors=True)
        self.stack = Stack(self.home, self.port, extra_env=self.env)
        self.stack.wait_ready(120)
        return login(self.stack)

    def stop(self) -> None:
        if self.stack is not None:
            self.stack.stop()


def run_backend(
    b: Backend, csv: Path, edited: Path, rows: int, s3: S3Server | None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    client = b.start()
    ds = client.post("/api/v1/datasets", json={"name": f"s3-{time.time_ns()}"}).json()["id"]
    first = upload(client, ds, csv, "bench.csv")
    out["import_s"], v0 = first["seconds"], first["job"]["commit_id"]
    print(f"[{b.name}] first import {out['import_s']:.2f} s  {first['phases']}")

    client = b.start(empty_cache=True)  # a worker that has read nothing of the store
    second = upload(client, ds, edited, "bench.csv")
    out["reupload_cold_s"], v1 = second["seconds"], second["job"]["commit_id"]
    out["reupload_parsed_rows"] = second["job"]["result"].get("parsed_rows")
    print(f"[{b.name}] re-upload, cold cache {out['reupload_cold_s']:.2f} s  {second['phases']}")

    offsets = [random.Random(7).randrange(rows - 100) for _ in range(100)]
    client = b.start(empty_cache=True)
    out["pages_cold"] = _pages(client, ds, v0, offsets)
    client = b.start()  # fresh processes, the cache on disk from the pages before
    out["pages_disk_warm"] = _pages(client, ds, v0, offsets)
    out["pages_warm"] = _pages(client, ds, v0, offsets)
    print(
        f"[{b.name}] pages p95 cold {out['pages_cold']['p95_ms']:.1f} ms, "
        f"disk-warm {out['pages_disk_warm']['p95_ms']:.1f}, warm {out['pages_warm']['p95_ms']:.1f}"
    )

    exports = []
    for _ in range(3):
        t = time.perf_counter()
        n = 0
        with client.stream("GET", f"/api/v1/datasets/{ds}/refs/{v1}/export?format=csv") as r:
            for part in r.iter_bytes(1 << 20):
                n += len(part)
        exports.append(n / 1e6 / (time.perf_counter() - t))
    out["csv_export_mb_s"] = sorted(exports)[1]
    print(f"[{b.name}] CSV export {out['csv_export_mb_s']:.0f} MB/s ({n / 1e6:.0f} MB)")

    link = client.post(
        f"/api/v1/datasets/{ds}/refs/{v1}/export-links", json={"format": "parquet"}
    ).json()["url"]
    client.head(link).raise_for_status()  # stored once (the first request builds it)
    log = s3.log_path if s3 else None
    scans: dict[str, Any] = {}
    for what, query in {
        "whole": lambda: pl.scan_parquet(link).collect(),
        "id < 1000, 2 columns": lambda: (
            pl.scan_parquet(link).filter(pl.col("id") < 1000).select("id", "name").collect()
        ),
    }.items():
        start = log.stat().st_size if log else 0
        t = time.perf_counter()
        got = query()
        scans[what] = {"s": time.perf_counter() - t, "rows": got.height}
        if log:
            time.sleep(0.5)
            scans[what]["bucket_gets"] = _gets_of(log, start, "exports")
    out["scan_parquet"] = scans
    whole = httpx.get(link, follow_redirects=True, timeout=600).content
    out["parquet_row_groups"] = pq.ParquetFile(io.BytesIO(whole)).metadata.num_row_groups
    out["parquet_bytes"] = len(whole)
    print(f"[{b.name}] scan_parquet {json.dumps(scans)}")
    b.stop()
    return out


def bucket_floor(s3: S3Server, csv: Path, tmp: Path) -> dict[str, float]:
    """What the bucket itself costs, same run: the CSV PUT in 16 MiB parts (as
    the API streams an upload) and GET back in one stream (as a worker fetches
    it), in MB/s."""
    from core.s3 import _transfer

    client = s3.client()
    mb = csv.stat().st_size / 1e6
    t = time.perf_counter()
    client.upload_file(str(csv), S3Server.BUCKET, "floor/bench.csv", Config=_transfer())
    put = time.perf_counter() - t
    t = (
        time.perf_counter()
    )  # one stream, as a worker fetches an upload (moto's ranged GETs are slow)
    body = client.get_object(Bucket=S3Server.BUCKET, Key="floor/bench.csv")["Body"]
    with (tmp / "floor.csv").open("wb") as out:
        for part in body.iter_chunks(1 << 20):
            out.write(part)
    get = time.perf_counter() - t
    client.delete_object(Bucket=S3Server.BUCKET, Key="floor/bench.csv")
    (tmp / "floor.csv").unlink()
    return {"put_s": put, "get_s": get, "put_mb_s": mb / put, "get_mb_s": mb / get}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--backends", default="file,s3")
    args = ap.parse_args()
    res: dict[str, Any] = {
        "machine": machine(),
        "started_at": datetime.now().isoformat(),
        "load_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="dsa-bench-s3-") as d:
        tmp = Path(d)
        csv = tmp / "bench.csv"
        generate_csv(csv, args.rows)
        (edited,) = write_versions(csv, args.rows, 1, tmp)
        for name in args.backends.split(","):
            s3 = S3Server.start(tmp) if name == "s3" else None
            env = {**s3.env, "DSA_EXPORT_REDIRECT": "true"} if s3 else {}
            backend = Backend(name, tmp, env)
            if s3:
                res["bucket_floor"] = bucket_floor(s3, csv, tmp)
                print(f"bucket floor: {json.dumps(res['bucket_floor'])}")
            try:
                res[name] = run_backend(backend, csv, edited, args.rows, s3)
            finally:
                backend.stop()
                if s3:
                    s3.proc.terminate()
    res["load_after"] = os.getloadavg()
    report(res)
    write_results("s3", res)
    return 0


def report(res: dict[str, Any]) -> None:
    f, s = res.get("file"), res.get("s3")
    print(f"\nload {res['load_before'][0]:.2f} → {res['load_after'][0]:.2f}")
    rows = [
        ("first import, end to end (s)", "import_s"),
        ("re-upload, cold node cache (s)", "reupload_cold_s"),
        ("CSV export (MB/s)", "csv_export_mb_s"),
    ]
    for label, key in rows:
        fv, sv = (f or {}).get(key), (s or {}).get(key)
        ratio = f"×{sv / fv:.2f}" if fv and sv else ""
        print(f"  {label:34} file {fv or 0:8.2f}   s3 {sv or 0:8.2f}  {ratio}")
    if "bucket_floor" in res:
        bf = res["bucket_floor"]
        print(
            f"  the bucket alone: PUT of the CSV {bf['put_s']:.2f} s ({bf['put_mb_s']:.0f} MB/s), "
            f"GET {bf['get_s']:.2f} s ({bf['get_mb_s']:.0f} MB/s)"
        )
    for mode in ("pages_cold", "pages_disk_warm", "pages_warm"):
        fv, sv = (f or {}).get(mode, {}), (s or {}).get(mode, {})
        print(
            f"  page p95 {mode[6:]:25} file {fv.get('p95_ms', 0):8.1f}   "
            f"s3 {sv.get('p95_ms', 0):8.1f} ms"
        )


if __name__ == "__main__":
    raise SystemExit(main())

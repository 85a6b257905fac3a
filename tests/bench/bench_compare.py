"""Compare and merge of two versions of the 1M-row table, over HTTP.

Run: ``.venv/bin/python tests/bench/bench_compare.py`` (part of ``make bench``).

Same seeded table as bench_import.py (1,000,000 rows × 12 columns), imported
into two datasets of one embedded stack (``dsa up``): one without a primary
key, one keyed on ``id``. Each then gets three more versions, each changing
``quantity`` in 1 % of the rows at random positions (seeded), uploaded as
full files (the way users re-upload).

Measured from this client over HTTP, wall time per request:

- **summary** (``?limit=0``) of a pair never compared before (cold: the
  API computes the alignment), then the same request again (warm);
- **first page of 100 changes** of another fresh pair (cold), and again (warm);
- **merge**: a branch from v1 edits 1 % of ``price`` while main goes to v2
  (1 % of ``quantity``); ``POST …/merges`` of the branch into main (a true
  three-way merge), wall time of the request.

Targets (issue: versioning): summary ≤ 100 ms, first page ≤ 200 ms, merge ≤ 2 s.
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

from tests.bench.bench_formats import upload  # noqa: E402
from tests.bench.bench_import import (  # noqa: E402
    ADMIN_PASSWORD,
    ADMIN_USER,
    RESULTS_DIR,
    Stack,
    free_port,
    generate_csv,
    machine,
)


def edit(df: pl.DataFrame, column: str, seed: int, out: Path) -> pl.DataFrame:
    """1 % of the rows at random positions get a new value in ``column``."""
    rnd = random.Random(seed)
    picked = sorted(rnd.sample(range(df.height), df.height // 100))
    values = df.get_column(column).to_list()
    for i in picked:
        v = values[i]
        values[i] = (v or 0) + 1
    edited = df.with_columns(pl.Series(column, values, dtype=df.schema[column]))
    edited.write_csv(out)
    return edited


def timed(client: httpx.Client, method: str, url: str, **kw: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    r = client.request(method, url, **kw)
    ms = (time.perf_counter() - t) * 1000
    r.raise_for_status()
    return ms, r.json()


def run(args: argparse.Namespace, tmp: Path, res: dict[str, Any]) -> None:
    csv = tmp / "v1.csv"
    df = generate_csv(csv, args.rows)
    versions = [csv]
    current = df
    for k in range(3):
        out = tmp / f"v{k + 2}.csv"
        current = edit(current, "quantity", 100 + k, out)
        versions.append(out)
    branch_csv = tmp / "branch.csv"
    edit(df, "price", 999, branch_csv)
    print("inputs ready")

    stack = Stack(tmp / "home", free_port())
    try:
        stack.wait_ready(120)
        client = httpx.Client(base_url=stack.url, timeout=httpx.Timeout(600, connect=10))
        r = client.post(
            "/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
        )
        client.headers["Authorization"] = f"Bearer {r.raise_for_status().json()['access_token']}"
        for label, pk in (("unkeyed", None), ("keyed", ["id"])):
            body: dict[str, Any] = {"name": f"compare-{label}-{time.time_ns()}"}
            if pk:
                body["primary_key"] = pk
            ds = client.post("/api/v1/datasets", json=body).raise_for_status().json()["id"]
            commits = [upload(client, ds, p, "bench.csv")["job"]["commit_id"] for p in versions]
            out: dict[str, Any] = {"commits": commits}
            base = f"/api/v1/datasets/{ds}/compare"
            cold, warm = [], []
            for a, b in ((0, 1), (1, 2)):
                ms, s = timed(client, "GET", f"{base}/{commits[a]}...{commits[b]}?limit=0")
                cold.append(ms)
                warm.append(timed(client, "GET", f"{base}/{commits[a]}...{commits[b]}?limit=0")[0])
            out["summary_ms"] = {"cold": cold, "warm": warm, "summary": s["summary"]}
            cold, warm = [], []
            for a, b in ((2, 3), (0, 2)):
                ms, page = timed(client, "GET", f"{base}/{commits[a]}...{commits[b]}?limit=100")
                cold.append(ms)
                warm.append(
                    timed(client, "GET", f"{base}/{commits[a]}...{commits[b]}?limit=100")[0]
                )
            out["first_page_ms"] = {
                "cold": cold,
                "warm": warm,
                "changes": len(page["changes"]),
                "summary": page["summary"],
            }
            res[label] = out
            if args.no_merge:
                continue
            # merge: a branch at v1 changes price; main is at v4 (quantity changed)
            client.post(
                f"/api/v1/datasets/{ds}/branches", json={"name": "edit", "from": commits[0]}
            ).raise_for_status()
            with branch_csv.open("rb") as fh:
                r = client.post(
                    f"/api/v1/datasets/{ds}/refs/edit/uploads", files={"file": ("bench.csv", fh)}
                )
            job = r.raise_for_status().json()["job_id"]
            while client.get(f"/api/v1/jobs/{job}").json()["state"] in ("queued", "running"):
                time.sleep(0.1)
            ms, merged = timed(
                client,
                "POST",
                f"/api/v1/datasets/{ds}/merges",
                json={"source": "edit", "target": "main", "message": "merge"},
            )
            check = timed(client, "GET", f"{base}/{commits[-1]}...main?limit=0")[1]["summary"]
            out["merge"] = {"ms": ms, "result": merged, "summary_vs_main": check}
            res[label] = out
            print(label, json.dumps(out))
    finally:
        stack.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--no-merge", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the stack's home for profiling")
    args = ap.parse_args()
    res: dict[str, Any] = {"machine": machine(), "started_at": datetime.now().isoformat()}
    if args.keep:
        keep = Path(tempfile.mkdtemp(prefix="dsa-bench-compare-"))
        print(f"keeping {keep}")
        run(args, keep, res)
    else:
        with tempfile.TemporaryDirectory(prefix="dsa-bench-compare-") as d:
            run(args, Path(d), res)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"compare-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(res, indent=2))
    for label in ("unkeyed", "keyed"):
        r = res[label]
        print(
            f"{label}: summary cold {statistics.median(r['summary_ms']['cold']):.0f} ms "
            f"warm {statistics.median(r['summary_ms']['warm']):.0f} ms; first page cold "
            f"{statistics.median(r['first_page_ms']['cold']):.0f} ms warm "
            f"{statistics.median(r['first_page_ms']['warm']):.0f} ms; "
            f"merge {r['merge']['ms'] if 'merge' in r else float('nan'):.0f} ms"
        )
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Pages of the 1M-row table over HTTP: unfiltered, filtered and sorted.

Run: ``.venv/bin/python tests/bench/bench_reads.py`` (part of ``make bench``).

Same seeded table as bench_import.py (1,000,000 rows × 12 columns). One
embedded stack (``dsa up``); v1 is uploaded, then v2, a re-upload of it with
1 % of ``quantity`` edited, 0.5 % of the rows removed and 0.5 % inserted at
random positions (seeded). All reads are of **v1 by commit id** (an old
version, served from its own chunks while main has moved on). Wall time per
request from this client:

- **unfiltered**: pages of 100 rows at 300 random offsets;
- **filtered, first page**: ``customer_id = K`` (~10 matches in 1M rows) for
  30 random K, and ``city = '<city>' and quantity > T`` (~0.05-0.5 %) for
  20 (city, T) pairs: each a query never run before (cold: the positions are
  computed by scanning the filter's columns);
- **filtered, later pages**: 4 more pages of each ``city … quantity`` query
  at random offsets (the positions come from the query cache);
- **sorted** (no target): ``sort=-price`` and ``sort=city,-created_at``,
  first page and 5 later pages.

Targets (issue 5): unfiltered p95 ≤ 10 ms, filtered p95 ≤ 100 ms.
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

TARGETS = {"unfiltered_p95_ms": 10.0, "filtered_p95_ms": 100.0}
CITIES = ["Oslo", "Lima", "Rome", "Kyoto", "Paris", "Seoul"]


def edit(df: pl.DataFrame, seed: int, out: Path) -> None:
    """1 % of quantity edited, 0.5 % of rows removed, 0.5 % inserted (copies of others)."""
    rnd = random.Random(seed)
    n = df.height
    q = df.get_column("quantity").to_list()
    for i in rnd.sample(range(n), n // 100):
        q[i] = (q[i] or 0) + 1
    df = df.with_columns(pl.Series("quantity", q, dtype=pl.Int64))
    keep = sorted(set(range(n)) - set(rnd.sample(range(n), n // 200)))
    df = df[keep]
    new = df.sample(n // 200, seed=seed).with_columns(pl.col("id") + 10_000_000)
    parts, at = [], 0
    for cut in sorted(rnd.sample(range(df.height), new.height)):
        parts.append(df[at:cut])
        at = cut
    parts.append(df[at:])
    pieces = [parts[0]]
    for k in range(new.height):
        pieces += [new[k : k + 1], parts[k + 1]]
    pl.concat(pieces).write_csv(out)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def summary(xs: list[float]) -> dict[str, float]:
    return {"n": len(xs), "p50": statistics.median(xs), "p95": pct(xs, 95), "max": max(xs)}


def get(client: httpx.Client, url: str, **params: Any) -> tuple[float, dict[str, Any]]:
    t = time.perf_counter()
    r = client.get(url, params=params)
    ms = (time.perf_counter() - t) * 1000
    r.raise_for_status()
    return ms, r.json()


def run(args: argparse.Namespace, tmp: Path, res: dict[str, Any]) -> None:
    v1 = tmp / "v1.csv"
    df = generate_csv(v1, args.rows)
    v2 = tmp / "v2.csv"
    edit(df, 7, v2)
    print("inputs ready")
    stack = Stack(tmp / "home", free_port())
    try:
        stack.wait_ready(120)
        client = httpx.Client(base_url=stack.url, timeout=httpx.Timeout(600, connect=10))
        r = client.post(
            "/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
        )
        client.headers["Authorization"] = f"Bearer {r.raise_for_status().json()['access_token']}"
        ds = client.post("/api/v1/datasets", json={"name": f"reads-{time.time_ns()}"})
        ds_id = ds.raise_for_status().json()["id"]
        old = upload(client, ds_id, v1, "bench.csv")["job"]["commit_id"]
        upload(client, ds_id, v2, "bench.csv")
        url = f"/api/v1/datasets/{ds_id}/refs/{old}/data"
        rnd = random.Random(args.seed)
        get(client, url, limit=1)  # connection, commit and manifest loaded

        unfiltered = [
            get(client, url, offset=rnd.randrange(args.rows - 100), limit=100)[0]
            for _ in range(300)
        ]
        res["unfiltered"] = summary(unfiltered)

        first_cust, first_city, later = [], [], []
        for _ in range(30):
            ms, body = get(client, url, filter=f"customer_id = {rnd.randint(1, 100_000)}")
            first_cust.append(ms)
        matches = []
        for _ in range(20):
            text = f"city = '{rnd.choice(CITIES)}' and quantity > {rnd.randint(950, 995)}"
            ms, body = get(client, url, filter=text, limit=100)
            first_city.append(ms)
            total = body["total_rows"]
            matches.append(total)
            for _ in range(4):
                off = rnd.randrange(max(total - 100, 1))
                later.append(get(client, url, filter=text, offset=off, limit=100)[0])
        res["filtered_first_customer_id"] = summary(first_cust)
        res["filtered_first_city_quantity"] = {**summary(first_city), "matches": matches}
        res["filtered_later"] = summary(later)
        res["filtered_all"] = summary(first_cust + first_city + later)

        for sort in ("-price", "city,-created_at"):
            first, _ = get(client, url, sort=sort, limit=100)
            pages = [
                get(client, url, sort=sort, offset=rnd.randrange(args.rows - 100), limit=100)[0]
                for _ in range(5)
            ]
            res[f"sorted {sort}"] = {"first_ms": first, "later": summary(pages)}
        print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=1))
    finally:
        stack.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--keep", action="store_true", help="keep the stack's home for profiling")
    args = ap.parse_args()
    res: dict[str, Any] = {"machine": machine(), "started_at": datetime.now().isoformat()}
    if args.keep:
        keep = Path(tempfile.mkdtemp(prefix="dsa-bench-reads-"))
        print(f"keeping {keep}")
        run(args, keep, res)
    else:
        with tempfile.TemporaryDirectory(prefix="dsa-bench-reads-") as d:
            run(args, Path(d), res)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"reads-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(res, indent=2))
    u, f = res["unfiltered"]["p95"], res["filtered_all"]["p95"]
    print(
        f"unfiltered p95 {u:.1f} ms (target {TARGETS['unfiltered_p95_ms']}); "
        f"filtered p95 {f:.1f} ms (target {TARGETS['filtered_p95_ms']})"
    )
    print(f"results in {out}")
    return 0 if u <= TARGETS["unfiltered_p95_ms"] and f <= TARGETS["filtered_p95_ms"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Catalog search (issue 17): ``GET /api/v1/search`` over 10,000 datasets of
20 columns each, end to end over HTTP; the issue's target is p95 ≤ 50 ms.

The datasets are written straight into PostgreSQL (names, descriptions,
tags, readmes, the catalog's table and column names; a third private to
their owner, a third internal, a third public): creating 10,000 datasets
and importing a table into each through the API would take an hour and
measure imports, not search. The search document is made by the same
trigger as for any dataset. Queries run as a signed-in user who owns none
of the private ones (so the permission filter works) and anonymously.

Writes ``tests/bench/results/catalog-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_import import (  # noqa: E402
    Stack,
    free_port,
    login,
    machine,
    percentile,
    write_results,
)
from tests.bench.bench_scaleout import stack_env  # noqa: E402

WORDS = """
customer order invoice payment shipment product price quantity discount revenue
region country city store warehouse supplier employee salary department budget
sensor reading temperature humidity pressure device firmware event session click
campaign channel impression conversion account balance ledger transaction fraud patient
visit diagnosis dose trial cohort gene sample assay station rainfall
""".split()  # noqa: SIM905  (a paragraph of words reads better)
TAGS = ["finance", "sales", "iot", "health", "marketing", "hr", "ops", "gold", "raw", "pii"]


SYLLABLES = "ka lo mi ne ru sa te vo zu pe di ga bo fi hu ja".split()  # noqa: SIM905


def vocabulary(n: int, rng: random.Random) -> list[str]:
    """The 50 domain words, then ``n`` made-up ones: a catalog's words."""
    made = {"".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))) for _ in range(n * 2)}
    return WORDS + sorted(made - set(WORDS))[:n]


def zipf(words: list[str], rng: random.Random, k: int) -> list[str]:
    """``k`` words drawn with Zipf-like weights (the first ones most common)."""
    return rng.choices(words, weights=[1 / (i + 1) for i in range(len(words))], k=k)


def _columns(rng: random.Random) -> list[str]:
    return [f"{rng.choice(WORDS)}_{rng.choice(['id', 'date', 'amount', 'name', 'code'])}"
            for _ in range(20)]  # fmt: skip


def seed(url: str, users: list[uuid.UUID], n: int, vocab: list[str]) -> None:
    rng = random.Random(17)
    rows, perms = [], []
    for i in range(n):
        did = uuid.uuid4()
        owner = rng.choice(users)
        words = zipf(vocab, rng, 6)
        rows.append((
            did, f"{words[0]}-{words[1]}-{i}", " ".join(zipf(vocab, rng, 12)).capitalize(),
            ["private", "internal", "public"][i % 3], owner,
            rng.sample(TAGS, rng.randint(0, 3)),
            "# " + words[2] + "\n\n" + " ".join(zipf(vocab, rng, 80)),
            [f"{words[3]}_{k}" for k in range(rng.randint(1, 3))], _columns(rng),
        ))  # fmt: skip
        perms.append((did, owner, "admin"))
    with psycopg.connect(url, autocommit=True) as c, c.cursor() as cur:
        cur.executemany(
            "INSERT INTO dataset (id, name, description, visibility, created_by, tags,"
            " readme, catalog_tables, catalog_columns) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
            rows,
        )
        cur.executemany(
            "INSERT INTO dataset_permission (dataset_id, user_id, role) VALUES (%s,%s,%s)",
            perms,
        )
    # the planner's statistics, as autovacuum would make them a minute later
    # (ANALYZE needs the tables' owner: the API's URL is the application role's)
    owner = url.replace("dsa_app@", "postgres@", 1)
    with psycopg.connect(owner, autocommit=True) as c:
        c.execute("ANALYZE dataset")
        c.execute("ANALYZE dataset_permission")


def _measure(client: httpx.Client, queries: list[str], rounds: int, facets: bool) -> dict[str, Any]:
    for q in queries:  # warm-up
        client.get("/api/v1/search", params={"q": q, "facets": facets}).raise_for_status()
    lat, totals = [], []
    for _ in range(rounds):
        for q in queries:
            s = time.perf_counter()
            r = client.get("/api/v1/search", params={"q": q, "facets": facets})
            lat.append((time.perf_counter() - s) * 1000)
            totals.append(r.raise_for_status().json()["total"])
    return {
        "requests": len(lat),
        "p50_ms": round(percentile(lat, 0.5), 2),
        "p95_ms": round(percentile(lat, 0.95), 2),
        "max_ms": round(max(lat), 2),
        "median_total": sorted(totals)[len(totals) // 2],
    }


def run(args: argparse.Namespace, tmp: Path, res: dict[str, Any]) -> None:
    stack = Stack(tmp / "home", free_port())
    try:
        stack.wait_ready(180)
        admin = login(stack)
        ids = []
        for name in ("owner-a", "owner-b", "reader"):
            r = admin.post("/api/v1/users", json={"username": name, "password": "bench-pass-123"})
            ids.append(uuid.UUID(r.raise_for_status().json()["id"]))
        url = stack_env(stack, "DSA_DATABASE_URL")
        assert url, "no database URL"
        t = time.perf_counter()
        vocab = vocabulary(args.words, random.Random(3))
        seed(url, ids[:2], args.datasets, vocab)
        res["seed_s"] = round(time.perf_counter() - t, 2)
        reader = httpx.Client(base_url=stack.url, timeout=30)
        tok = reader.post("/api/v1/auth/login",
                          json={"username": "reader", "password": "bench-pass-123"})  # fmt: skip
        reader.headers["Authorization"] = f"Bearer {tok.raise_for_status().json()['access_token']}"
        anonymous = httpx.Client(base_url=stack.url, timeout=30)
        rng = random.Random(5)
        # what people type: words as common as the catalog's, pairs, prefixes,
        # a column name; and apart, the catalog's most common word (a worst case)
        queries = zipf(vocab, rng, 12)
        queries += [" ".join(zipf(vocab, rng, 2)) for _ in range(4)]
        queries += [w[:4] for w in zipf(vocab, rng, 3)] + ["customer_id"]
        for who, client in (("reader", reader), ("anonymous", anonymous)):
            for label, qs in (("typical", queries), ("most_common_word", [WORDS[0]])):
                res[f"{who}_{label}"] = _measure(client, qs, args.rounds, args.facets)
                print(who, label, json.dumps(res[f"{who}_{label}"]), flush=True)
        res["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    finally:
        stack.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--datasets", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--words", type=int, default=5000, help="made-up words beside the 50")
    ap.add_argument("--facets", action="store_true", help="ask for facets too (the UI does)")
    args = ap.parse_args()
    res: dict[str, Any] = {
        "machine": machine(),
        "datasets": args.datasets,
        "words": args.words,
        "facets": args.facets,
    }
    with tempfile.TemporaryDirectory(prefix="dsa-bench-catalog-") as tmp:
        run(args, Path(tmp), res)
    write_results("catalog", res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

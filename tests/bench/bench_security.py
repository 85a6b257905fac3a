"""Security figures of issue 15: a password-guessing attack and a crowd of
anonymous clients, each while a signed-in user reads pages.

Run: ``.venv/bin/python tests/bench/bench_security.py`` (part of ``make bench``).

An embedded stack (``dsa up``, default limits) holds the seeded 1M-row table
(bench_import's) as a public dataset with two versions (the second changes
``quantity`` in 1 % of the rows). A signed-in reader requests 100-row pages
at random offsets (``GET …/refs/main/data``) and the report gives their p50
and p95 wall time:

1. **idle**: nothing else runs (also without a credential: the
   difference is what checking the user against the database costs);
2. **login attack**: 1,000 sign-ins with wrong passwords for one user from
   one address (8 at a time): how many were checked (401) and how many
   refused before any hash (429), and the reader's pages meanwhile;
3. **anonymous crowd**: 20 anonymous clients, each from its own address
   (``X-Forwarded-For``, believed from 127.0.0.1), request filtered and
   sorted pages and compares of the two versions as fast as they are
   answered for 30 s; how many were served (200) and refused (429), and
   the reader's pages meanwhile. Target: reader p95 within 2× idle.

Results go to tests/bench/results/security-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_compare import edit  # noqa: E402
from tests.bench.bench_formats import upload  # noqa: E402
from tests.bench.bench_import import (  # noqa: E402
    RESULTS_DIR,
    Stack,
    free_port,
    generate_csv,
    login,
    machine,
    percentile,
)

CROWD = 20
CROWD_SECONDS = 30.0
ATTEMPTS = 1000


class Reader(threading.Thread):
    """Requests random 100-row pages until stopped; keeps each wall time."""

    def __init__(self, url: str, token: str | None, dataset: str, rows: int) -> None:
        super().__init__(daemon=True)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=url, timeout=60, headers=headers)
        self.path = f"/api/v1/datasets/{dataset}/refs/main/data"
        self.rows = rows
        self.ms: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.stop = threading.Event()
        self.rnd = random.Random(7)

    def one(self) -> None:
        offset = self.rnd.randrange(0, self.rows - 100)
        t = time.perf_counter()
        r = self.client.get(self.path, params={"limit": 100, "offset": offset})
        self.ms.append((time.perf_counter() - t) * 1000)
        if r.status_code != 200 and r.status_code != 429:
            raise RuntimeError(f"{self.path}: {r.status_code} {r.text[:500]}")
        self.statuses[r.status_code] += 1

    def run(self) -> None:
        while not self.stop.is_set():
            self.one()
            time.sleep(0.02)  # a person paging, not a loop

    def figures(self) -> dict[str, Any]:
        return {
            "requests": len(self.ms),
            "p50_ms": round(percentile(self.ms, 0.5), 2),
            "p95_ms": round(percentile(self.ms, 0.95), 2),
            "statuses": dict(self.statuses),
        }


def idle(url: str, token: str, dataset: str, rows: int, n: int = 300) -> dict[str, Any]:
    """The reader's pages with nothing else running, and the same pages
    without a credential, interleaved (same offsets, same caches): the
    difference is what checking the caller against the database costs."""
    signed, anonymous = Reader(url, token, dataset, rows), Reader(url, None, dataset, rows)
    anonymous.rnd = random.Random(7)
    for reader in (signed, anonymous):
        for _ in range(20):  # warm up
            reader.one()
        reader.ms.clear()
        reader.statuses.clear()
    anonymous.rnd = random.Random(11)
    signed.rnd = random.Random(11)
    for i in range(n):
        first, second = (signed, anonymous) if i % 2 else (anonymous, signed)
        first.one()
        second.one()
        time.sleep(0.02)
    return {**signed.figures(), "anonymous": anonymous.figures()}


def login_attack(url: str, token: str, dataset: str, rows: int) -> dict[str, Any]:
    reader = Reader(url, token, dataset, rows)
    reader.start()
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    todo = iter(range(ATTEMPTS))

    def attacker() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                r = c.post(
                    "/api/v1/auth/login",
                    json={"username": "victim", "password": f"guess-{i:06d}"},
                    headers={"X-Forwarded-For": "203.0.113.9"},
                )
                with lock:
                    statuses[r.status_code] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=attacker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    reader.stop.set()
    reader.join()
    return {
        "attempts": ATTEMPTS,
        "checked_401": statuses.get(401, 0),
        "refused_429": statuses.get(429, 0),
        "other": {k: v for k, v in statuses.items() if k not in (401, 429)},
        "seconds": round(seconds, 2),
        "attempts_per_s": round(ATTEMPTS / seconds, 1),
        "reader": reader.figures(),
    }


def crowd(url: str, token: str, dataset: str, rows: int) -> dict[str, Any]:
    reader = Reader(url, token, dataset, rows)
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    stop = threading.Event()
    d = f"/api/v1/datasets/{dataset}"
    heavy = [
        (f"{d}/refs/main/data", {"limit": 100, "filter": "price > 50000", "sort": "-score"}),
        (f"{d}/refs/main/data", {"limit": 100, "filter": "city = 'Oslo'", "sort": "name"}),
        (f"{d}/compare/v1...main", {"limit": 100}),
    ]

    def anonymous(k: int) -> None:
        rnd = random.Random(k)
        with httpx.Client(base_url=url, timeout=120) as c:
            while not stop.is_set():
                path, params = rnd.choice(heavy)
                r = c.get(path, params=params, headers={"X-Forwarded-For": f"198.51.100.{k}"})
                if r.status_code not in (200, 429):
                    raise RuntimeError(f"{path}: {r.status_code} {r.text[:500]}")
                with lock:
                    statuses[r.status_code] += 1
                if r.status_code == 429:  # a polite client; an impolite one costs the limiter only
                    time.sleep(min(float(r.headers.get("retry-after", "1")), 5.0))

    threads = [threading.Thread(target=anonymous, args=(k,), daemon=True) for k in range(CROWD)]
    for t in threads:
        t.start()
    time.sleep(3)  # the crowd is at it
    reader.start()
    time.sleep(CROWD_SECONDS)
    reader.stop.set()
    stop.set()
    reader.join()
    for t in threads:
        t.join(timeout=120)
    return {
        "clients": CROWD,
        "seconds": CROWD_SECONDS,
        "served_200": statuses.get(200, 0),
        "refused_429": statuses.get(429, 0),
        "other": {k: v for k, v in statuses.items() if k not in (200, 429)},
        "reader": reader.figures(),
    }


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    csv = tmp / "v1.csv"
    df = generate_csv(csv, args.rows)
    edit(df, "quantity", 1, tmp / "v2.csv")
    stack = Stack(tmp / "home", free_port())
    try:
        stack.wait_ready(180)
        admin = login(stack)
        ds = (
            admin.post("/api/v1/datasets", json={"name": "bench-security", "visibility": "public"})
            .raise_for_status()
            .json()["id"]
        )
        upload(admin, ds, csv, "orders.csv")
        admin.post(f"/api/v1/datasets/{ds}/tags", json={"name": "v1", "from": "main"})
        upload(admin, ds, tmp / "v2.csv", "orders.csv")
        for name in ("reader", "victim"):
            admin.post(
                "/api/v1/users", json={"username": name, "password": f"{name}-password"}
            ).raise_for_status()
        token = (
            httpx.post(
                f"{stack.url}/api/v1/auth/login",
                json={"username": "reader", "password": "reader-password"},
            )
            .raise_for_status()
            .json()["access_token"]
        )
        out = {"idle": idle(stack.url, token, ds, args.rows)}
        print("idle", out["idle"], flush=True)
        out["login_attack"] = login_attack(stack.url, token, ds, args.rows)
        print("login attack", out["login_attack"], flush=True)
        out["crowd"] = crowd(stack.url, token, ds, args.rows)
        print("crowd", out["crowd"], flush=True)
        base = out["idle"]["p95_ms"]
        for part in ("login_attack", "crowd"):
            out[part]["reader"]["p95_vs_idle"] = round(out[part]["reader"]["p95_ms"] / base, 2)
        return out
    finally:
        stack.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="dsa-bench-security-") as tmp:
        res = {
            "benchmark": "security",
            "when": datetime.now().isoformat(timespec="seconds"),
            "machine": machine(),
            "load_before": os.getloadavg(),
            **run(args, Path(tmp)),
            "load_after": os.getloadavg(),
        }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"security-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    print(f"written {out}")


if __name__ == "__main__":
    main()

"""Server time of every web UI page on a 1M-row dataset, over HTTP.

Run: ``.venv/bin/python tests/bench/bench_ui.py`` (part of ``make bench``).

Same seeded table as bench_import.py (1,000,000 rows × 12 columns) imported
into one dataset of an embedded stack (``dsa up``), then two more versions
each changing ``quantity`` in 1 % of the rows at random (the versioning
benchmark's edit, bench_compare.edit), a tag and a branch. The client signs
in through the sign-in form (cookie session) and requests each page.

Per page: the **cold** request (the first time the server sees it: for the
compare and commit pages a pair never compared before, so the alignment is
computed), then 20 **warm** requests; for each the server time the app
reports in its ``Server-Timing: app;dur=…`` header (from routing to the
rendered HTML: service calls, template) and the wall time seen by this
client on the same machine (adds HTTP, uvicorn and the middleware).

A cold figure is one request, so it carries the whole noise of a shared
machine: ``--runs N`` (default 3) restarts ``dsa up`` on the same home
N - 1 more times (a fresh API process, nothing cached in it; the data and
the OS page cache stay) and requests every page again in the same order;
the report gives each page's cold time per run and their median, and the
warm percentiles over all runs.

Target (issue 6): server time ≤ 100 ms per page, compare page included.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_compare import edit  # noqa: E402
from tests.bench.bench_formats import upload  # noqa: E402
from tests.bench.bench_import import (  # noqa: E402
    ADMIN_PASSWORD,
    ADMIN_USER,
    RESULTS_DIR,
    Stack,
    free_port,
    generate_csv,
    machine,
    percentile,
)

TARGET_MS = 100.0
WARM = 20


def server_ms(r: httpx.Response) -> float:
    m = re.search(r"app;dur=([0-9.]+)", r.headers.get("server-timing", ""))
    return float(m.group(1)) if m else float("nan")


def get(client: httpx.Client, url: str) -> tuple[float, float, httpx.Response]:
    t = time.perf_counter()
    r = client.get(url)
    wall = (time.perf_counter() - t) * 1000
    if r.status_code != 200:
        raise RuntimeError(f"{url}: {r.status_code}\n{r.text[:2000]}")
    return server_ms(r), wall, r


def sign_in(client: httpx.Client) -> None:
    page = client.get("/signin").text
    csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page).group(1)  # type: ignore[union-attr]
    r = client.post(
        "/signin", data={"username": ADMIN_USER, "password": ADMIN_PASSWORD, "csrf": csrf}
    )
    if r.status_code != 303:
        raise RuntimeError(f"sign-in failed: {r.status_code}")


def run(args: argparse.Namespace, tmp: Path, res: dict[str, Any]) -> None:
    csv = tmp / "v1.csv"
    df = generate_csv(csv, args.rows)
    v2 = edit(df, "quantity", 100, tmp / "v2.csv")
    edit(v2, "quantity", 101, tmp / "v3.csv")
    print("inputs ready")
    stack = Stack(tmp / "home", free_port())
    try:
        stack.wait_ready(120)
        api = httpx.Client(base_url=stack.url, timeout=httpx.Timeout(600, connect=10))
        r = api.post(
            "/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
        )
        api.headers["Authorization"] = f"Bearer {r.raise_for_status().json()['access_token']}"
        ds = (
            api.post("/api/v1/datasets", json={"name": f"ui-{time.time_ns()}"})
            .raise_for_status()
            .json()["id"]
        )
        commits = [
            upload(api, ds, tmp / f"v{k}.csv", "bench.csv")["job"]["commit_id"] for k in (1, 2, 3)
        ]
        api.post(
            f"/api/v1/datasets/{ds}/tags", json={"name": "v1", "from": commits[0]}
        ).raise_for_status()
        api.post(
            f"/api/v1/datasets/{ds}/branches", json={"name": "edits", "from": commits[1]}
        ).raise_for_status()
        res["commits"] = commits
        print("dataset ready", commits)

        d = f"/datasets/{ds}"
        pages = {
            "datasets list": "/datasets",
            "dataset home (first 100 rows)": d,
            "data, page at row 500,001": f"{d}?offset=500000",
            "data, jump to row 987,654, 3 columns": f"{d}?row=987654&col=id&col=quantity&col=price",
            "data, filtered (quantity > 95)": f"{d}?filter=quantity+%3E+95",
            "history": f"{d}/history",
            "commit page (changes vs parent, 1 % edit)": f"{d}/commits/{commits[2]}",
            "compare v1...v2 (1 % edit)": f"{d}/compare/{commits[0]}...{commits[1]}",
            "compare, page 50 of changes": (
                f"{d}/compare/{commits[0]}...{commits[1]}?offset=4900&limit=100"
            ),
            "branches and tags": f"{d}/branches",
            "upload": f"{d}/upload",
            "merge": f"{d}/merge?source=edits&target=main",
            "settings": f"{d}/settings",
            "API tokens": "/account/tokens",
        }
        cold: dict[str, list[float]] = {n: [] for n in pages}
        cold_wall: dict[str, list[float]] = {n: [] for n in pages}
        server: dict[str, list[float]] = {n: [] for n in pages}
        wall: dict[str, list[float]] = {n: [] for n in pages}
        for k in range(args.runs):
            if k:  # a fresh API process on the same data
                stack.stop()
                stack = Stack(tmp / "home", free_port())
                stack.wait_ready(120)
            web = httpx.Client(base_url=stack.url, timeout=httpx.Timeout(600, connect=10))
            sign_in(web)
            load = os.getloadavg()[0]
            for name, url in pages.items():
                cs, cw, _ = get(web, url)
                cold[name].append(cs)
                cold_wall[name].append(cw)
                for _ in range(WARM):
                    s, w, _ = get(web, url)
                    server[name].append(s)
                    wall[name].append(w)
                print(
                    f"run {k + 1} (load {load:.2f}) {name:45s} cold {cs:6.1f} ms (wall {cw:6.1f})"
                )
            res.setdefault("load_average_at_start_of_run", []).append(load)
        out: dict[str, Any] = {}
        for name, url in pages.items():
            out[name] = {
                "url": url,
                "cold": {
                    "server_ms": statistics.median(cold[name]),
                    "server_ms_runs": cold[name],
                    "wall_ms": statistics.median(cold_wall[name]),
                },
                "warm": {
                    "server_p50": statistics.median(server[name]),
                    "server_p95": percentile(server[name], 0.95),
                    "wall_p50": statistics.median(wall[name]),
                    "wall_p95": percentile(wall[name], 0.95),
                },
            }
            runs = " ".join(f"{v:.1f}" for v in cold[name])
            print(
                f"{name:45s} cold median {out[name]['cold']['server_ms']:6.1f} ms [{runs}];"
                f" warm p50 {out[name]['warm']['server_p50']:6.1f}"
                f" p95 {out[name]['warm']['server_p95']:6.1f} ms"
                f" (wall p50 {out[name]['warm']['wall_p50']:6.1f})"
            )
        res["pages"] = out
    finally:
        stack.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3, help="cold runs (fresh API processes)")
    args = ap.parse_args()
    res: dict[str, Any] = {"machine": machine(), "started_at": datetime.now().isoformat()}
    with tempfile.TemporaryDirectory(prefix="dsa-bench-ui-") as d:
        run(args, Path(d), res)
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"ui-{datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(res, indent=2))
    worst = max(max(p["cold"]["server_ms"], p["warm"]["server_p95"]) for p in res["pages"].values())
    print(
        f"slowest server time (cold median or warm p95): {worst:.1f} ms"
        f" (target ≤ {TARGET_MS:.0f} ms)"
    )
    print(f"results in {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

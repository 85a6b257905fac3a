"""History benchmark: pages of history and merge bases on a long commit graph.

    .venv/bin/python tests/bench/bench_history.py [--commits 10000] [--requests 200]
        [--server-url postgresql://postgres@127.0.0.1:5432/postgres] [--keep]

1. starts the embedded PostgreSQL (``core.embedded.start_postgres``, as the
   test suite does) in a temp dir, or uses the server ``--server-url`` names;
   creates a fresh database and migrates it;
2. builds a dataset of ``--commits`` commits directly through the services
   (``commits_service.record`` and ``refs_service``; commits without tables,
   no file imports): ``main`` is a long first-parent line that merges a
   5-commit side branch every 100 commits, ``old`` forked from ``main``
   near its start and grew its own long line (with merges too), so the two
   diverged long ago;
3. serves the API with uvicorn in its own process (``python -m api.cli api``)
   and measures over real HTTP (httpx, keep-alive, one client), after a warm-up,
   p50/p95 of: first-parent history page 1 and a deep page; ``all=true``
   page 1, the middle page (the worst case: pages are read from the nearer
   end) and a deep page (near the end of the graph); the merge base of
   ``main...old``. The same operations are also timed in-process, calling
   the service functions directly (no HTTP, no JSON), to show the server-side share;
4. prints a table, writes ``tests/bench/results/history-<timestamp>.json`` and
   exits non-zero when a p95 over HTTP is above its target (50 ms).

This is a script, not part of the package.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "bench-admin-password"
TARGET_P95_MS = 50.0
PER_PAGE = 50


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- graph


def build(commits: int) -> dict[str, Any]:
    """The dataset and its graph, written through the services in batches."""
    from core import db
    from core.objects import Commit, commit_time
    from features.auth import service as auth_service
    from features.commits import service as commits_service
    from features.datasets import service as datasets_service
    from features.refs import service as refs_service

    with db.transaction() as conn:
        auth_service.ensure_admin(conn, username=ADMIN_USER, password=ADMIN_PASSWORD)
        user = auth_service.user_by_name(conn, ADMIN_USER)
        ds = datasets_service.create_dataset(conn, user, name=f"history-{uuid.uuid4().hex[:8]}")
        root = refs_service.get_branch(conn, ds["id"], "main")["commit_id"]
    dataset_id = ds["id"]
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    made = [0]
    conn_box: list[Any] = []

    def add(*parents: str, message: str) -> str:
        made[0] += 1
        c = Commit(
            parents=parents,
            tables={},
            author="bench",
            created_at=commit_time(t0 + timedelta(seconds=made[0])),
            message=message,
            provenance={"n": made[0]},
        )
        return commits_service.record(conn_box[0], dataset_id=dataset_id, commit=c)

    merges = 0
    heads = {"main": root, "old": root}
    fork_at = 200
    started = time.perf_counter()
    with db.transaction() as conn:
        conn_box[:] = [conn]
        while made[0] < fork_at:  # main's first commits: the shared history
            heads["main"] = add(heads["main"], message=f"main {made[0]}")
        heads["old"] = fork = heads["main"]
    # then both lines grow in turn (interleaved times, as two teams working at
    # once would make them); each merges a 5-commit side branch every 100 commits
    n = 0
    while made[0] < commits - 1:  # the root is the last one
        with db.transaction() as conn:
            conn_box[:] = [conn]
            for _ in range(500):
                if made[0] >= commits - 1:
                    break
                n += 1
                line = "main" if n % 2 else "old"
                heads[line] = add(heads[line], message=f"{line} {made[0]}")
                if n % 200 in (0, 1) and made[0] + 6 <= commits - 1:
                    side = heads[line]
                    for k in range(5):
                        side = add(side, message=f"{line} side {k}")
                    heads[line] = add(heads[line], side, message=f"merge side into {line}")
                    merges += 1
    with db.transaction() as conn:
        refs_service.cas_move(
            conn, dataset_id=dataset_id, name="main", new=heads["main"], expected=root
        )
        refs_service.create_branch_at(
            conn, dataset_id=dataset_id, name="old", commit_id=heads["old"], by="bench"
        )
        total = conn.execute(
            "SELECT count(*) AS n FROM commit WHERE dataset_id = %s", (dataset_id,)
        ).fetchone()["n"]
    # the steady state autovacuum reaches: statistics, and a visibility map
    # that lets the history index answer without visiting the table
    with psycopg.connect(db.database_url(), autocommit=True) as c:
        c.execute("VACUUM ANALYZE commit")
        c.execute("VACUUM ANALYZE commit_link")
    return {
        "dataset_id": str(dataset_id),
        "commits": total,
        "merges": merges,
        "main": heads["main"],
        "old": heads["old"],
        "fork": fork,
        "build_seconds": time.perf_counter() - started,
    }


# --------------------------------------------------------------------------- timing


def timed(fn: Callable[[], Any], n: int, warmup: int = 20) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    lat = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        lat.append((time.perf_counter() - t) * 1000)
    return {
        "n": n,
        "p50_ms": percentile(lat, 0.5),
        "p95_ms": percentile(lat, 0.95),
        "max_ms": max(lat),
    }


def cases(graph: dict[str, Any], totals: dict[str, int]) -> dict[str, dict[str, Any]]:
    """name -> (query parameters of GET …/commits, or a merge-base spec)."""
    fp_deep = totals["first_parent"] // PER_PAGE - 1
    all_deep = totals["all"] // PER_PAGE - 1
    return {
        "first-parent page 1": {"params": {"ref": "main", "per_page": PER_PAGE}},
        f"first-parent page {fp_deep}": {
            "params": {"ref": "main", "per_page": PER_PAGE, "page": fp_deep}
        },
        "all=true page 1": {"params": {"ref": "main", "per_page": PER_PAGE, "all": "true"}},
        f"all=true page {all_deep // 2 + 1} (middle)": {
            "params": {
                "ref": "main",
                "per_page": PER_PAGE,
                "page": all_deep // 2 + 1,
                "all": "true",
            }
        },
        f"all=true page {all_deep}": {
            "params": {"ref": "main", "per_page": PER_PAGE, "page": all_deep, "all": "true"}
        },
        "merge-base main...old": {"spec": "main...old"},
    }


def run(args: argparse.Namespace, tmp: Path, res: dict[str, Any]) -> bool:
    from core.embedded import start_postgres

    services = []
    server_url = args.server_url
    if not server_url:
        pg = start_postgres(tmp / "postgres", log_path=tmp / "postgres.log")
        services.append(pg)
        server_url = pg.url
    res["postgres"] = "embedded" if not args.server_url else "server at --server-url"
    db_name = f"dsa_bench_history_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
    db_url = server_url.rpartition("/")[0] + "/" + db_name
    home = tmp / "home"
    env = {
        "DSA_HOME": str(home),
        "DSA_DATABASE_URL": db_url,
        "DSA_STORAGE_URL": (home / "objects").as_uri(),
        "DSA_JWT_SECRET": "bench-" + uuid.uuid4().hex,
        "DSA_ADMIN_USER": ADMIN_USER,
        "DSA_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "DSA_LOG_LEVEL": "WARNING",
        # one client timing thousands of requests: the per-user limits on
        # requests and expensive ones (issue 15) would answer 429
        "DSA_RATE_LIMIT_USER": "1000000/minute",
        "DSA_EXPENSIVE_PER_USER": "64",
    }
    os.environ.update(env)
    api = None
    try:
        from core import db
        from core.config import get_settings
        from core.migrate import migrate

        get_settings.cache_clear()
        migrate(db_url)
        graph = build(args.commits)
        res["graph"] = graph
        print(
            f"graph: {graph['commits']:,} commits, {graph['merges']} merges, "
            f"built in {graph['build_seconds']:.1f} s"
        )

        port = free_port()
        log = tmp / "api.log"
        api = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "api", "--port", str(port)],
            cwd=REPO,
            env={**os.environ, **env},
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if api.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"api did not start:\n{log.read_text(errors='replace')}")
            time.sleep(0.2)
        client = httpx.Client(base_url=base, timeout=30)
        r = client.post(
            "/api/v1/auth/login", json={"username": ADMIN_USER, "password": ADMIN_PASSWORD}
        )
        r.raise_for_status()
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        ds = graph["dataset_id"]
        hist = f"/api/v1/datasets/{ds}/commits"
        totals = {
            "first_parent": client.get(hist, params={"ref": "main"}).json()["total"],
            "all": client.get(hist, params={"ref": "main", "all": "true"}).json()["total"],
        }
        res["totals_from_main"] = totals
        mb = client.get(f"/api/v1/datasets/{ds}/merge-base/main...old").json()
        res["merge_base"] = mb
        assert mb["merge_base"] == graph["fork"], (mb, graph["fork"])

        from features.commits import service as commits_service

        ds_uuid = uuid.UUID(ds)
        main = graph["main"]
        out: dict[str, Any] = {}
        for name, case in cases(graph, totals).items():
            if "spec" in case:
                url = f"/api/v1/datasets/{ds}/merge-base/{case['spec']}"

                def over_http(url: str = url) -> None:
                    client.get(url).raise_for_status()

                def in_process() -> None:
                    with db.read() as conn:
                        commits_service.merge_base(conn, ds_uuid, main, graph["old"])

            else:
                params = case["params"]

                def over_http(params: dict[str, Any] = params) -> None:
                    r = client.get(hist, params=params)
                    r.raise_for_status()
                    assert len(r.json()["items"]) == PER_PAGE

                page = int(params.get("page", 1))

                def in_process(page: int = page, all_parents: bool = "all" in params) -> None:
                    with db.read() as conn:
                        rows, _ = commits_service.history(
                            conn,
                            ds_uuid,
                            main,
                            offset=(page - 1) * PER_PAGE,
                            limit=PER_PAGE,
                            all_parents=all_parents,
                        )
                    assert len(rows) == PER_PAGE

            out[name] = {
                "http": timed(over_http, args.requests),
                "service": timed(in_process, args.requests),
            }
            h, s = out[name]["http"], out[name]["service"]
            print(
                f"{name:<32} HTTP p50 {h['p50_ms']:6.1f}  p95 {h['p95_ms']:6.1f} ms   "
                f"service p50 {s['p50_ms']:6.1f}  p95 {s['p95_ms']:6.1f} ms"
            )
        res["cases"] = out
        client.close()
        return all(v["http"]["p95_ms"] <= TARGET_P95_MS for v in out.values())
    finally:
        if api is not None:
            api.terminate()
            try:
                api.wait(20)
            except subprocess.TimeoutExpired:
                api.kill()
        try:
            from core import db

            db.close_pool()
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(db_name)
                    )
                )
        except psycopg.Error:
            pass
        for s in services:
            s.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commits", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=200, help="timed requests per case")
    ap.add_argument("--server-url", help="a PostgreSQL server URL (default: embedded)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dsa-bench-history-"))
    res: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "target_p95_ms": TARGET_P95_MS,
    }
    ok = False
    try:
        ok = run(args, tmp, res)
    finally:
        res["ok"] = ok
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS_DIR / f"history-{stamp}.json"
        path.write_text(json.dumps(res, indent=2, default=str))
        print(f"results: {path}")
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print("all p95 within target" if ok else f"a p95 is above {TARGET_P95_MS:.0f} ms")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""``dsa gc`` on a store with 10,000 orphan objects beside 100 live commits
(issue 14's figure).

One embedded stack: a dataset given 100 commits (a 20,000-row CSV, then 99
re-uploads each changing 1 % of its rows), then 10,000 orphan objects
written straight into the store (chunks, manifests and stored exports of
1–64 KiB, dated two days back: what failed imports and forgotten exports
leave). Then, against the running stack: ``dsa gc --dry-run``, ``dsa gc``
(the default grace, 24 h), a second ``dsa gc`` with nothing left to do,
``dsa fsck --deep`` to show nothing live went, ``dsa backup`` of what is
left (and again: only new objects are copied) and ``dsa restore`` of it into
a new home. Each timed end to end (process start included; the restore
starts and stops its own embedded PostgreSQL).

    .venv/bin/python tests/bench/bench_gc.py [--commits 100] [--orphans 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_formats import upload  # noqa: E402
from tests.bench.bench_import import Stack, free_port, login, machine, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ROWS = 20_000


def cli(home: Path, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA_")}
    env["DSA_FSCK_BYTES_PER_S"] = "0"
    t = time.perf_counter()
    got = subprocess.run(
        [sys.executable, "-m", "api.cli", *args, "--home", str(home)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    out: dict[str, Any] = {"exit": got.returncode, "seconds": time.perf_counter() - t}
    lines = got.stdout.strip().splitlines()
    out["last"] = lines[-1] if lines else got.stderr.strip()[-300:]
    if "--json" in args and lines:
        try:
            out["report"] = json.loads(lines[0])
            out["summary"] = json.loads(lines[-1]).get("summary")
        except ValueError:
            pass
    if args[0] in ("backup", "restore") and lines:
        doc = json.loads(lines[-1])
        out["summary"] = {k: doc[k] for k in ("objects", "objects_copied", "bytes_copied")}
    return out


def csv_version(path: Path, seed: int) -> None:
    rng = random.Random(seed)
    edited = set(rng.sample(range(ROWS), ROWS // 100))
    with path.open("w") as f:
        f.write("id,name,amount,day\n")
        for i in range(ROWS):
            name = f"v{seed}-{i}" if i in edited else f"name-{i}"
            f.write(f"{i},{name},{(i * 37) % 1000}.25,2024-01-{1 + i % 28:02d}\n")


def orphans(objects: Path, n: int) -> int:
    """Write ``n`` unreferenced objects into a file:// store, dated two days back."""
    rng = random.Random(7)
    when = time.time() - 2 * 86_400
    total = 0
    for i in range(n):
        kind = ("chunks", "manifests", "exports")[i % 3]
        name = rng.randbytes(32).hex()
        path = objects / kind / name[:2] / name[2:4] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randint(1024, 64 * 1024))
        path.write_bytes(data)
        os.utime(path, (when, when))
        total += len(data)
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=100)
    ap.add_argument("--orphans", type=int, default=10_000)
    args = ap.parse_args()
    res: dict[str, Any] = {"machine": machine(), "started_at": datetime.now().isoformat()}
    with tempfile.TemporaryDirectory(prefix="dsa-bench-gc-") as d:
        tmp = Path(d)
        home = tmp / "home"
        stack = Stack(home, free_port())
        try:
            stack.wait_ready(120)
            client = login(stack)
            ds = client.post("/api/v1/datasets", json={"name": "gc"}).json()["id"]
            t = time.perf_counter()
            for seed in range(args.commits):
                path = tmp / "v.csv"
                csv_version(path, seed)
                upload(client, ds, path, "gc.csv")
            res["commits_made_s"] = time.perf_counter() - t
            res["orphan_bytes"] = orphans(home / "objects", args.orphans)
            time.sleep(1)
            res["load_before"] = os.getloadavg()
            runs = {
                "gc --dry-run": cli(home, "gc", "--dry-run", "--json"),
                "gc": cli(home, "gc", "--json"),
                "gc again (nothing to do)": cli(home, "gc", "--json"),
                "fsck --deep": cli(home, "fsck", "--deep"),
                "backup": cli(home, "backup", str(tmp / "backup"), "--json"),
                "backup again": cli(home, "backup", str(tmp / "backup"), "--json"),
            }
            runs["restore (new home)"] = cli(
                tmp / "restored", "restore", str(tmp / "backup"), "--json"
            )
            res["load_after"] = os.getloadavg()
        finally:
            stack.stop()
    res["runs"] = runs
    print(
        f"\n{args.commits} commits, {args.orphans:,} orphans "
        f"({res['orphan_bytes'] / 1e6:.0f} MB); load {res['load_before'][0]:.2f}"
    )
    for name, r in runs.items():
        print(
            f"  {name:26} exit {r['exit']}  {r['seconds']:.2f} s  {r.get('summary') or r['last']}"
        )
    write_results("gc", res)
    gc = runs["gc"].get("summary") or {}
    ok = all(r["exit"] == 0 for r in runs.values()) and gc.get("deleted_objects") == args.orphans
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

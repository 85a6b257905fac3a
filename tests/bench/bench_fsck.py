"""``dsa fsck`` on the 1M-row table with 10 versions (issue 14's figure).

One embedded stack: the seeded 1M-row × 12-column table of
``bench_import.py`` imported, then re-uploaded ten times (1 % of rows
updated, 0.5 % deleted, 0.5 % inserted, as ``bench_formats.py`` makes
them); then ``dsa fsck --home`` and ``dsa fsck --home --deep`` against the
running stack, unpaced (``DSA_FSCK_BYTES_PER_S=0``) and paced at the
default, each timed end to end (process start included) with its own
report of objects checked and bytes read.

    .venv/bin/python tests/bench/bench_fsck.py [--rows 1000000] [--versions 10]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_formats import upload, write_versions  # noqa: E402
from tests.bench.bench_import import (  # noqa: E402
    Stack,
    free_port,
    generate_csv,
    login,
    machine,
    write_results,
)

REPO = Path(__file__).resolve().parents[2]


def fsck(home: Path, *args: str, rate: str | None = None) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA_")}
    if rate is not None:
        env["DSA_FSCK_BYTES_PER_S"] = rate
    t = time.perf_counter()
    got = subprocess.run(
        [sys.executable, "-m", "api.cli", "fsck", "--home", str(home), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t
    last = got.stdout.strip().splitlines()[-1] if got.stdout.strip() else got.stderr
    m = re.match(r"(\d+) objects checked \(([\d.]+) MB read in ([\d.]+) s", last)
    out: dict[str, Any] = {"exit": got.returncode, "seconds": seconds, "line": last}
    if m:
        out |= {"objects": int(m[1]), "mb": float(m[2]), "check_s": float(m[3])}
        out["mb_s"] = out["mb"] / max(out["check_s"], 1e-9)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--versions", type=int, default=10)
    args = ap.parse_args()
    res: dict[str, Any] = {"machine": machine(), "started_at": datetime.now().isoformat()}
    with tempfile.TemporaryDirectory(prefix="dsa-bench-fsck-") as d:
        tmp = Path(d)
        csv = tmp / "bench.csv"
        generate_csv(csv, args.rows)
        versions = write_versions(csv, args.rows, args.versions, tmp)
        home = tmp / "home"
        stack = Stack(home, free_port())
        try:
            stack.wait_ready(120)
            client = login(stack)
            ds = client.post("/api/v1/datasets", json={"name": "fsck"}).json()["id"]
            for path in [csv, *versions]:
                upload(client, ds, path, "bench.csv")
            time.sleep(2)
            res["load_before"] = os.getloadavg()
            runs = {
                "fsck": fsck(home, rate="0"),
                "fsck --deep": fsck(home, "--deep", rate="0"),
                "fsck (paced, default)": fsck(home),
                "fsck --deep (paced, default)": fsck(home, "--deep"),
            }
            res["load_after"] = os.getloadavg()
        finally:
            stack.stop()
    res["runs"] = runs
    print(f"\n{args.rows:,} rows, {args.versions} re-uploads; load {res['load_before'][0]:.2f}")
    for name, r in runs.items():
        print(f"  {name:28} exit {r['exit']}  {r['seconds']:.2f} s end to end  {r['line']}")
    write_results("fsck", res)
    return 0 if all(r["exit"] == 0 for r in runs.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

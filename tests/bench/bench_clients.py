"""The clients (issue 16), on the 1M-row × 12-column benchmark table:

- ``dsa upload`` end to end (upload, import, the job's event stream) against
  the same upload with curl and polling the job every 0.1 s, alternating,
  each into a new dataset (a fresh import each time); the overhead's target
  is ≤ 5 %;
- ``dsa lock add`` (the table's digest, computed by the server) and
  ``dsa pull`` (download, then the digest recomputed from the file), MB/s;
- a filtered, projected read of the table by ranged Parquet reads: through a
  signed link (``dsa.Client().scan``, polars) and through ``dsa://`` (fsspec
  and pyarrow), with the bytes each fetched against the file's size.

Writes ``tests/bench/results/clients-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_import import (  # noqa: E402
    RESULTS_DIR,
    Stack,
    free_port,
    generate_csv,
    login,
    machine,
)


def _token(stack: Stack) -> str:
    """An API token for the commands (made with the admin's session)."""
    h = login(stack)
    try:
        r = h.post("/api/v1/tokens", json={"name": "bench"})
        return str(r.raise_for_status().json()["token"])
    finally:
        h.close()


def _dataset(url: str, token: str) -> str:
    r = httpx.post(
        f"{url}/api/v1/datasets",
        json={"name": f"clients-{time.time_ns()}"},
        headers={"Authorization": f"Bearer {token}"},
    )
    return str(r.raise_for_status().json()["name"])


def curl_upload(url: str, token: str, ds: str, csv: Path) -> float:
    t = time.perf_counter()
    out = subprocess.run(
        ["curl", "-sf", "-H", f"Authorization: Bearer {token}", "-F", f"file=@{csv}",
         "-F", "table=bench", f"{url}/api/v1/datasets/{ds}/refs/main/uploads"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    job = json.loads(out.stdout)["job_id"]
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}) as h:
        while True:
            state = h.get(f"{url}/api/v1/jobs/{job}").json()["state"]
            if state in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.1)
    assert state == "succeeded", state
    return time.perf_counter() - t


def dsa(env: dict[str, str], *args: str, cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).with_name("dsa")), *args], env=env, cwd=cwd, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    return time.perf_counter() - t


def ranged_reads(url: str, token: str, ds: str, home: Path) -> dict[str, Any]:
    import dsa as client
    import fsspec
    import polars as pl
    import pyarrow.parquet as pq

    out: dict[str, Any] = {}
    with client.Client(url, token) as c:
        link = c.export_link(ds, "main", "bench")
        size = int(httpx.head(link).headers["content-length"])  # stores the file
        log = home / "logs" / "api.log"
        before = log.stat().st_size
        t = time.perf_counter()
        got = pl.scan_parquet(link).filter(pl.col("quantity") > 990).select("id", "price").collect()
        out["scan_link_s"] = time.perf_counter() - t
        time.sleep(0.5)
        served = 0
        with log.open() as f:
            f.seek(before)
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if str(entry.get("path", "")).endswith("/export") and entry.get("status") == 206:
                    served += int(entry.get("bytes") or 0)
        out.update(file_bytes=size, scan_link_rows=got.height, scan_link_bytes=served)
    os.environ["DSA_URL"], os.environ["DSA_TOKEN"] = url, token
    fs = fsspec.filesystem("dsa")
    t = time.perf_counter()
    with fs.open(f"dsa://{ds}@main/bench.parquet") as f:
        table = pq.read_table(f, columns=["id", "price"], filters=[("quantity", ">", 990)])
        out["dsa_url_bytes"] = f.fetched
    out["dsa_url_s"] = time.perf_counter() - t
    out["dsa_url_rows"] = table.num_rows
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    res: dict[str, Any] = {"machine": machine(), "started_at": datetime.now().isoformat()}
    with tempfile.TemporaryDirectory(prefix="dsa-bench-clients-") as d:
        tmp = Path(d)
        csv = tmp / "bench.csv"
        generate_csv(csv, args.rows)
        stack = Stack(tmp / "home", free_port())
        try:
            stack.wait_ready(120)
            url = stack.url
            token = _token(stack)
            env = {k: v for k, v in os.environ.items() if not k.startswith("DSA_")}
            env.update(DSA_URL=url, DSA_TOKEN=token, DSA_CONFIG_DIR=str(tmp / "config"))
            import dsa as client

            curl, cli, lib = [], [], []
            for _ in range(args.runs):
                curl.append(curl_upload(url, token, _dataset(url, token), csv))
                ds = _dataset(url, token)
                cli.append(dsa(env, "upload", str(csv), ds, "--table", "bench", cwd=tmp))
                with client.Client(url, token) as c:
                    other = _dataset(url, token)
                    t = time.perf_counter()
                    c.upload(other, csv, table="bench")
                    lib.append(time.perf_counter() - t)
                print(
                    f"curl+poll {curl[-1]:.2f} s   dsa upload {cli[-1]:.2f} s   "
                    f"Client.upload {lib[-1]:.2f} s",
                    flush=True,
                )
            res["upload"] = {
                "curl_s": curl, "dsa_s": cli, "client_s": lib, "load": os.getloadavg()[0]
            }  # fmt: skip
            res["lock_s"] = dsa(env, "lock", "add", f"{ds}@main", cwd=tmp)
            pulls = []
            for i in range(args.runs):
                pulls.append(dsa(env, "pull", "--dir", f"pull{i}", cwd=tmp))
            pulled = tmp / "pull0" / ds / "bench.parquet"
            from dsa.lock import _columns, digest_of, read

            spec = read(tmp / "dsa.lock")["dataset"][0]["table"][0]
            t = time.perf_counter()
            digest_of(pulled, _columns(spec["columns"]))
            res["pull"] = {
                "seconds": pulls,
                "bytes": pulled.stat().st_size,
                "verify_s": time.perf_counter() - t,
                "rows": spec["rows"],
            }
            res["ranged"] = ranged_reads(url, token, ds, tmp / "home")
        finally:
            stack.stop()
    res["loadavg_at_end"] = os.getloadavg()[0]
    report(res)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"clients-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(res, indent=2, default=str))
    print(f"results: {out}")
    return 0


def report(res: dict[str, Any]) -> None:
    up = res["upload"]
    a, b = statistics.median(up["curl_s"]), statistics.median(up["dsa_s"])
    c = statistics.median(up["client_s"])
    print(
        f"upload of the 1M-row CSV: curl+poll {a:.2f} s, dsa upload {b:.2f} s "
        f"(overhead {100 * (b / a - 1):+.1f} %, target ≤ 5 %), dsa.Client.upload in a "
        f"running interpreter {c:.2f} s ({100 * (c / a - 1):+.1f} %)"
    )
    p = res["pull"]
    s = statistics.median(p["seconds"])
    print(
        f"dsa lock add {res['lock_s']:.2f} s; dsa pull {s:.2f} s for {p['bytes'] / 1e6:.1f} MB "
        f"({p['bytes'] / 1e6 / s:.0f} MB/s end to end, the digest recomputed in "
        f"{p['verify_s']:.2f} s)"
    )
    r = res["ranged"]
    print(
        f"filtered projection (quantity > 990; id, price): signed link + polars "
        f"{r['scan_link_s']:.2f} s, {r['scan_link_bytes'] / 1e6:.1f} of "
        f"{r['file_bytes'] / 1e6:.1f} MB; dsa:// + pyarrow {r['dsa_url_s']:.2f} s, "
        f"{r['dsa_url_bytes'] / 1e6:.1f} MB"
    )


if __name__ == "__main__":
    raise SystemExit(main())

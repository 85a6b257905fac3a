"""What a version costs the metadata database, the object store and the broker
(issue 13: the measurements behind docs/scale.md).

    .venv/bin/python tests/bench/bench_footprint.py [--storage s3|file] [--rows 1000000]
        [--versions 3] [--pages 100] [--clone-rows 100000] [--keep]

In one embedded stack (one worker process; on ``--storage s3``, the default,
its objects in a bucket of moto's S3 server in its own process):

1. idle for ``--idle`` seconds (what an idle stack asks of Redis, PostgreSQL
   and the bucket);
2. a dataset; the bench table (bench_import.py, ``--rows`` x 12 columns)
   imported; ``--versions`` re-uploads of it (bench_formats.py's edit: 1 %
   of rows updated, 0.5 % deleted, 0.5 % inserted, at random positions),
   each followed by the read copy the worker builds for it (decision 0016);
   the jobs are waited for in the database, not over the API;
3. ``--pages`` polls of a finished job over the API (``GET
   /api/v1/jobs/{id}``, what a client waiting for its job costs);
   ``--pages`` random pages of 100 rows of the first and of the last
   version, cold (the API process has read neither); a CSV export of the
   first version, a Parquet export of it twice (encoded and stored, then
   served from the store), a CSV export of the last version;
4. idle again.

After every step (the worker's queue empty, then ``--settle`` seconds: an
idle PostgreSQL backend flushes its statistics at most 10 s later): the
objects in the store by kind (count, bytes), the requests the S3 server
answered by operation and kind of object (from moto's access log, one line
a request), Redis's commands (``INFO commandstats``), PostgreSQL's
transactions and rows written (``pg_stat_database``); and, all along, the
PostgreSQL connections of each part of the stack (bench_scaleout.Monitor).

At the end, every table of the database: rows, heap, TOAST and index bytes,
the average row (``pg_column_size``) and its widest columns; then each table
that grows with commits, jobs or datasets is copied into a scratch schema
(same columns and indexes) and filled to ``--clone-rows`` rows made of the
measured rows with fresh keys, so bytes per row of the heap and of every
index are measured at a size where pages no longer round them (the scratch
schema is dropped afterwards). Prints it all and writes
``tests/bench/results/footprint-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.bench_formats import write_versions  # noqa: E402
from tests.bench.bench_import import (  # noqa: E402
    S3Server,
    Stack,
    free_port,
    generate_csv,
    login,
    machine,
    write_results,
)
from tests.bench.bench_scaleout import (  # noqa: E402
    BENCH_APP,
    Monitor,
    other_database,
    stack_env,
)

# moto's access log: 127.0.0.1 - - [date] "GET /bucket/prefix/chunks/ab… HTTP/1.1" 206 -
_REQUEST = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP/[\d.]+(?:\x1b\[[0-9;]*m)*" (\d+)')


def s3_requests(log: Path, start: int) -> tuple[Counter[str], int]:
    """The requests logged from byte ``start`` on, as ``"<op> <kind>"``
    counts, and where the log ends now."""
    with log.open("rb") as f:
        f.seek(start)
        data = f.read()
    end = start + data.rfind(b"\n") + 1 if b"\n" in data else start
    got: Counter[str] = Counter()
    for line in data[: end - start].decode(errors="replace").splitlines():
        m = _REQUEST.search(line)
        if not m:
            continue
        method, target, status = m.groups()
        path, _, query = target.partition("?")
        parts = path.strip("/").split("/")
        # /bucket/prefix/kind/...: the kind of object, or the bucket itself
        kind = parts[2] if len(parts) > 3 else ("(bucket)" if len(parts) <= 1 else parts[-1])
        if method == "GET" and len(parts) <= 1:
            continue  # a listing: DSA never lists, inventory() does (after each step)
        elif method == "GET":
            op = "GET range" if status == "206" else "GET"
        elif method == "HEAD":
            op = "HEAD" if status == "200" else f"HEAD {status}"
        elif method == "POST" and query.startswith("uploads"):
            op = "CREATE multipart"
        elif method == "POST":
            op = "COMPLETE multipart"
        elif method == "PUT" and "partNumber" in query:
            op = "PUT part"
        else:
            op = method
        got[f"{op} {kind}"] += 1
    return got, end


def inventory(stack_home: Path, s3: S3Server | None) -> dict[str, dict[str, int]]:
    """Objects in the store by kind: count and bytes (temporary files aside)."""
    out: dict[str, dict[str, int]] = {}
    if s3 is not None:
        client = s3.client()
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=S3Server.BUCKET, Prefix=f"{S3Server.PREFIX}/"
        )
        for page in pages:
            for o in page.get("Contents", []):
                kind = o["Key"].split("/")[1]
                got = out.setdefault(kind, {"count": 0, "bytes": 0})
                got["count"] += 1
                got["bytes"] += int(o["Size"])
        return out
    root = stack_home / "objects"
    for dirpath, _dirs, files in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if not rel.parts:
            continue
        for name in files:
            if name.endswith(".tmp"):
                continue
            got = out.setdefault(rel.parts[0], {"count": 0, "bytes": 0})
            got["count"] += 1
            got["bytes"] += (Path(dirpath) / name).stat().st_size
    return out


class Probe:
    """Snapshots of the stack's counters; ``step`` records what one step cost."""

    def __init__(self, stack: Stack, s3: S3Server | None, settle: float) -> None:
        import psycopg
        import redis

        self.stack, self.s3, self.settle = stack, s3, settle
        pg_url, redis_url = stack_env(stack, "DSA_DATABASE_URL"), stack_env(stack, "DSA_REDIS_URL")
        assert pg_url and redis_url, "the API's environment names no database or Redis"
        self.pg_url = pg_url
        self.pg = psycopg.connect(pg_url, autocommit=True, application_name=BENCH_APP)
        # the counters are read from the "postgres" database, so reading them
        # adds no transactions to DSA's
        self.stats = psycopg.connect(
            other_database(pg_url), autocommit=True, application_name=BENCH_APP
        )
        self.dbname = self.pg.info.dbname
        self.redis = redis.Redis.from_url(redis_url)
        self.own: Counter[str] = Counter()  # this probe's Redis commands, not counted
        self.own_xacts = 0  # this probe's transactions in DSA's database, not counted
        self.log_at = s3.log_path.stat().st_size if s3 and s3.log_path else 0
        self.last = self._counters()
        self.steps: list[dict[str, Any]] = []

    def upload(self, client: httpx.Client, ds: str, path: Path) -> dict[str, Any]:
        """Upload ``path`` over the API and wait for its job, reading the job
        from the database (counted, and taken off the step's transactions)
        rather than polling the API, whose requests would be in the figures."""
        start = time.time()
        with path.open("rb") as fh:
            r = client.post(
                f"/api/v1/datasets/{ds}/refs/main/uploads", files={"file": ("bench.csv", fh)}
            )
        job_id = r.raise_for_status().json()["job_id"]
        while True:
            row = self.pg.execute(
                "SELECT state, commit_id, params, error, extract(epoch FROM finished_at)"
                " FROM job WHERE id = %s",
                (job_id,),
            ).fetchone()
            self.own_xacts += 1
            assert row is not None
            if row[0] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
        if row[0] != "succeeded":
            raise RuntimeError(f"import failed: {json.dumps(row[3])}")
        result = row[2].get("result", {})
        return {"commit_id": row[1], "result": result, "seconds": float(row[4]) - start}

    def quiet(self, timeout: float = 600) -> None:
        """Until the worker's queue is empty and no task is unacknowledged
        (read copies built), then ``settle`` s for PostgreSQL to flush its
        statistics (a backend that flushed less than 1 s before waits 10 s)."""
        deadline = time.monotonic() + timeout
        calm = 0
        while calm < 3 and time.monotonic() < deadline:
            busy = self.redis.llen("dsa") + self.redis.hlen("unacked")
            self.own.update(("llen", "hlen"))
            calm = calm + 1 if not busy else 0
            time.sleep(0.5)
        time.sleep(self.settle)

    def _counters(self) -> dict[str, Any]:
        row = self.stats.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted,"
            " tup_returned, tup_fetched FROM pg_stat_database WHERE datname = %s",
            (self.dbname,),
        ).fetchone()
        assert row is not None
        names = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted")
        pg = dict(zip(names, (int(x) for x in row[:5]), strict=True))
        stats = self.redis.info("commandstats")  # counts the INFOs before this one
        cmds = {}
        for key, value in stats.items():
            name = key.removeprefix("cmdstat_")
            cmds[name] = int(value["calls"]) - self.own[name]
        self.own["info"] += 1
        return {"pg": pg, "redis": cmds, "t": time.monotonic()}

    def step(self, name: str, *, settle: bool = True, **extra: Any) -> dict[str, Any]:
        if settle:
            self.quiet()
        now = self._counters()
        s3: Counter[str] = Counter()
        if self.s3 is not None and self.s3.log_path is not None:
            s3, self.log_at = s3_requests(self.s3.log_path, self.log_at)
        pg = {k: v - self.last["pg"][k] for k, v in now["pg"].items()}
        pg["xact_commit"] -= self.own_xacts
        self.own_xacts = 0
        rec = {
            "step": name,
            "seconds": now["t"] - self.last["t"],
            "pg": pg,
            "redis": {
                k: v - self.last["redis"].get(k, 0)
                for k, v in now["redis"].items()
                if v - self.last["redis"].get(k, 0)
            },
            "s3": dict(sorted(s3.items())),
            "objects": inventory(self.stack.home, self.s3),
            **extra,
        }
        self.last = now
        self.steps.append(rec)
        total_s3 = sum(s3.values())
        print(
            f"  {name}: {rec['seconds']:.1f} s, PG {rec['pg']['xact_commit']} xacts, "
            f"Redis {sum(rec['redis'].values())} commands, S3 {total_s3} requests"
        )
        return rec


# --------------------------------------------------------------------------- PostgreSQL sizes

TABLE_SIZES = """
SELECT c.relname AS table, c.reltuples::bigint AS estimate,
       pg_relation_size(c.oid) AS heap_bytes,
       coalesce(pg_total_relation_size(c.reltoastrelid), 0) AS toast_bytes,
       pg_indexes_size(c.oid) AS index_bytes,
       pg_total_relation_size(c.oid) AS total_bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind = 'r' ORDER BY c.relname
"""
INDEX_SIZES = """
SELECT t.relname AS table, i.relname AS index, pg_relation_size(i.oid) AS bytes
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = %(schema)s ORDER BY t.relname, i.relname
"""


def table_sizes(conn: Any, schema: str) -> dict[str, dict[str, Any]]:
    from psycopg import sql

    conn.execute(sql.SQL("VACUUM ANALYZE"))
    out: dict[str, dict[str, Any]] = {}
    for row in conn.execute(TABLE_SIZES, {"schema": schema}).fetchall():
        name = row[0]
        ident = sql.Identifier(schema, name)
        count, avg_row = conn.execute(
            sql.SQL("SELECT count(*), avg(pg_column_size(t.*)) FROM {} t").format(ident)
        ).fetchone()
        cols = conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
            " AND NOT attisdropped ORDER BY attnum",
            (f'"{schema}"."{name}"',),
        ).fetchall()
        widths: dict[str, float] = {}
        if count:
            exprs = sql.SQL(", ").join(
                sql.SQL("avg(pg_column_size({}))").format(sql.Identifier(c[0])) for c in cols
            )
            got = conn.execute(sql.SQL("SELECT {} FROM {}").format(exprs, ident)).fetchone()
            widths = {c[0]: float(w or 0) for c, w in zip(cols, got or (), strict=True)}
        out[name] = {
            "rows": int(count),
            "heap_bytes": int(row[2]),
            "toast_bytes": int(row[3]),
            "index_bytes": int(row[4]),
            "total_bytes": int(row[5]),
            "avg_row_bytes": float(avg_row or 0),
            "column_bytes": widths,
            "indexes": {},
        }
    for table, index, size in conn.execute(INDEX_SIZES, {"schema": schema}).fetchall():
        if table in out:
            out[table]["indexes"][index] = int(size)
    return out


# Each table that grows, cloned to N rows from its measured rows with fresh
# keys: (table, INSERT … SELECT over generate_series(0, N-1) AS g(n) joined
# to the measured rows r numbered k = n % (their count)). Datasets are ids
# from a pool of N/100 (a commit's dataset has ~100 commits).
_CLONE = {
    "dataset": """
        SELECT gen_random_uuid(), 'dataset-' || n, r.description, r.primary_key, r.visibility,
               r.default_branch, r.created_by, r.created_at, r.updated_at, r.deleted_at
        {src}""",
    "dataset_permission": """
        SELECT gen_random_uuid(), r.user_id, r.role, r.granted_at {src}""",
    "commit": """
        SELECT md5('d' || (n / 100))::uuid, encode(sha256(('c' || n)::bytea), 'hex'),
               CASE WHEN n % 100 = 0 THEN '{{}}'::text[]
                    ELSE ARRAY[encode(sha256(('c' || (n - 1))::bytea), 'hex')] END,
               r.author, r.message, r.created_at, r.tables, r.provenance, r.row_count,
               r.table_count, n % 100, n % 100 + 1, n / 100, n % 100
        {src}""",
    "ref": """
        SELECT md5('d' || (n / 3))::uuid, CASE n % 3 WHEN 0 THEN 'main' ELSE 'branch-' || n END,
               r.kind, encode(sha256(('c' || n)::bytea), 'hex'), r.protected, r.message,
               r.created_by, r.created_at, r.updated_at {src}""",
    "ref_log": """
        SELECT md5('d' || (n / 100))::uuid, r.ref_name, r.kind, r.action, r.old_commit_id,
               r.new_commit_id, r.actor, r.reason, r.created_at {src}""",
    "upload": """
        SELECT gen_random_uuid(), md5('d' || (n / 100))::uuid, r.object_key, r.filename, r.size,
               r.blake3, r.created_by, r.created_at {src}""",
    "job": """
        SELECT gen_random_uuid(), r.kind, md5('d' || (n / 100))::uuid, r.ref_name,
               gen_random_uuid(), r.state, r.params, r.rows, r.bytes, r.total_bytes,
               r.commit_id, r.error, r.attempts, r.created_by,
               r.created_at + make_interval(secs => n), r.started_at, r.finished_at,
               r.heartbeat_at {src}""",
    "layout": """
        SELECT encode(sha256(('m' || n)::bytea), 'hex'), r.schema_id, r.state, r.row_count,
               r.object_prefix, r.part_rows, r.digest, r.bytes, r.requested_at, r.built_at,
               r.used_at {src}""",
}
_COLUMNS = {
    "dataset": "id, name, description, primary_key, visibility, default_branch, created_by,"
    " created_at, updated_at, deleted_at",
    "dataset_permission": "dataset_id, user_id, role, granted_at",
    "commit": "dataset_id, id, parents, author, message, created_at, tables, provenance,"
    " row_count, table_count, depth, generation, chain, chain_pos",
    "ref": "dataset_id, name, kind, commit_id, protected, message, created_by, created_at,"
    " updated_at",
    "ref_log": "dataset_id, ref_name, kind, action, old_commit_id, new_commit_id, actor, reason,"
    " created_at",
    "upload": "id, dataset_id, object_key, filename, size, blake3, created_by, created_at",
    "job": "id, kind, dataset_id, ref_name, upload_id, state, params, rows, bytes, total_bytes,"
    " commit_id, error, attempts, created_by, created_at, started_at, finished_at, heartbeat_at",
    "layout": "manifest_id, schema_id, state, row_count, object_prefix, part_rows, digest, bytes,"
    " requested_at, built_at, used_at",
}
# which measured rows stand for "one more": the rows a re-upload adds
_SAMPLE = {
    "commit": "WHERE cardinality(parents) > 0",
    "job": "WHERE state = 'succeeded' AND kind = 'import'",
    "ref_log": "WHERE action = 'move'",
}


def cloned_sizes(conn: Any, rows: int) -> dict[str, dict[str, Any]]:
    """Bytes per row of heap and indexes of each growing table at ``rows`` rows."""
    from psycopg import sql

    conn.execute("DROP SCHEMA IF EXISTS footprint CASCADE")
    conn.execute("CREATE SCHEMA footprint")
    try:
        for table, select in _CLONE.items():
            where = _SAMPLE.get(table, "")
            src = f"""FROM generate_series(0, {rows - 1}) AS g(n)
                JOIN (SELECT *, row_number() OVER () - 1 AS k,
                             count(*) OVER () AS total FROM public.{table} {where}) r
                  ON r.k = n % r.total"""
            conn.execute(
                sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(
                    sql.Identifier("footprint", table), sql.Identifier("public", table)
                )
            )
            conn.execute(
                f"INSERT INTO footprint.{table} ({_COLUMNS[table]}) "  # noqa: S608 - fixed text
                + select.format(src=src)
            )
        return table_sizes(conn, "footprint")
    finally:
        conn.execute("DROP SCHEMA footprint CASCADE")


# --------------------------------------------------------------------------- the run


def pages(client: httpx.Client, ds: str, commit: str, rows: int, n: int) -> float:
    url = f"/api/v1/datasets/{ds}/refs/{commit}/data"
    rng = random.Random(7)
    t = time.perf_counter()
    for _ in range(n):
        off = rng.randrange(max(rows - 100, 1))
        client.get(url, params={"offset": off, "limit": 100}).raise_for_status()
    return (time.perf_counter() - t) / n


def export(client: httpx.Client, ds: str, commit: str, fmt: str) -> int:
    size = 0
    with client.stream(
        "GET", f"/api/v1/datasets/{ds}/refs/{commit}/export", params={"format": fmt}
    ) as r:
        r.raise_for_status()
        for part in r.iter_bytes():
            size += len(part)
    return size


def run(args: argparse.Namespace, tmp: Path, res: dict[str, Any]) -> None:
    csv = tmp / "v1.csv"
    text = generate_csv(csv, args.rows)
    del text
    versions = write_versions(csv, args.rows, args.versions, tmp, first=2)
    s3 = S3Server.start(tmp) if args.storage == "s3" else None
    stack = Stack(tmp / "home", free_port(), extra_env=s3.env if s3 else None)
    try:
        stack.wait_ready(120)
        client = login(stack)
        probe = Probe(stack, s3, args.settle)
        monitor = Monitor(stack, probe.pg_url, interval=0.5)
        monitor.start()
        time.sleep(args.idle)
        probe.step("idle", settle=False)
        r = client.post("/api/v1/datasets", json={"name": "footprint"})
        ds = r.raise_for_status().json()["id"]
        probe.step("create dataset")
        got = probe.upload(client, ds, csv)
        first = got["commit_id"]
        probe.step("import v1", seconds_end_to_end=got["seconds"], rows=args.rows)
        last, last_rows = first, args.rows
        for k, path in enumerate(versions, start=2):
            got = probe.upload(client, ds, path)
            last, last_rows = got["commit_id"], got["result"]["table_rows"]
            probe.step(
                f"re-upload v{k} (+ its read copy)",
                seconds_end_to_end=got["seconds"],
                parsed_rows=got["result"].get("parsed_rows"),
            )
        row = probe.pg.execute("SELECT id FROM job ORDER BY created_at DESC LIMIT 1").fetchone()
        probe.own_xacts += 1
        assert row is not None
        for _ in range(args.pages):
            client.get(f"/api/v1/jobs/{row[0]}").raise_for_status()
        probe.step(f"{args.pages} polls of a job (GET /api/v1/jobs/{{id}})", polls=args.pages)
        ms = pages(client, ds, first, args.rows, args.pages)
        probe.step(f"{args.pages} pages of v1", ms_per_page=1000 * ms, pages=args.pages)
        ms = pages(client, ds, last, last_rows, args.pages)
        probe.step(f"{args.pages} pages of v{args.versions + 1}", ms_per_page=1000 * ms)
        for label, commit, fmt in (
            ("CSV export v1", first, "csv"),
            ("Parquet export v1, first", first, "parquet"),
            ("Parquet export v1, stored", first, "parquet"),
            (f"CSV export v{args.versions + 1}", last, "csv"),
        ):
            t = time.perf_counter()
            size = export(client, ds, commit, fmt)
            probe.step(label, bytes=size, export_s=time.perf_counter() - t)
        time.sleep(args.idle)
        probe.step("idle", settle=False)
        monitor.stop()
        res["steps"] = probe.steps
        res["pg_connections"] = {
            "peak_per_process": monitor.conns,
            "peak_per_part": monitor.conns_total,
            "peak_client_backends": monitor.backends,
            "max_connections": probe.pg.execute("SHOW max_connections").fetchone()[0],
        }
        res["tables"] = table_sizes(probe.pg, "public")
        res["cloned"] = cloned_sizes(probe.pg, args.clone_rows)
        res["clone_rows"] = args.clone_rows
        probe.pg.close()
        client.close()
    finally:
        stack.stop()
        if s3 is not None:
            s3.stop()


def report(res: dict[str, Any]) -> None:
    print("\nper step: objects added (count, bytes) and requests")
    prev: dict[str, dict[str, int]] = {}
    for st in res["steps"]:
        objs = st["objects"]
        added = {
            k: (
                v["count"] - prev.get(k, {}).get("count", 0),
                v["bytes"] - prev.get(k, {}).get("bytes", 0),
            )
            for k, v in objs.items()
        }
        prev = objs
        print(f"- {st['step']} ({st['seconds']:.1f} s)")
        changed = {k: v for k, v in added.items() if v != (0, 0)}
        if changed:
            print(
                "    objects: "
                + ", ".join(f"{k} {c:+} ({b / 1e6:+.2f} MB)" for k, (c, b) in changed.items())
            )
        if st["s3"]:
            print("    S3: " + ", ".join(f"{k} {v}" for k, v in st["s3"].items()))
        print("    Redis: " + ", ".join(f"{k} {v}" for k, v in sorted(st["redis"].items())))
        print("    PG: " + ", ".join(f"{k} {v}" for k, v in st["pg"].items()))
    print(
        "\nobjects at the end: "
        + ", ".join(
            f"{k} {v['count']} ({v['bytes'] / 1e6:.2f} MB)"
            for k, v in res["steps"][-1]["objects"].items()
        )
    )
    print(f"\nPostgreSQL connections: {res['pg_connections']}")
    for label in ("tables", "cloned"):
        print(f"\nPostgreSQL, {label}:")
        print(
            f"{'table':20} {'rows':>8} {'heap':>10} {'toast':>8} {'indexes':>10} "
            f"{'B/row':>8} {'avg row':>8}  indexes B/row"
        )
        for name, t in res[label].items():
            n = max(t["rows"], 1)
            print(
                f"{name:20} {t['rows']:>8} {t['heap_bytes']:>10} {t['toast_bytes']:>8} "
                f"{t['index_bytes']:>10} {t['total_bytes'] / n:>8.0f} {t['avg_row_bytes']:>8.0f}  "
                + ", ".join(f"{i} {b / n:.0f}" for i, b in t["indexes"].items())
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--storage", choices=["file", "s3"], default="s3")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--versions", type=int, default=3, help="re-uploads after the first import")
    ap.add_argument("--pages", type=int, default=100)
    ap.add_argument("--idle", type=float, default=20.0, help="seconds of each idle step")
    ap.add_argument("--clone-rows", type=int, default=100_000)
    ap.add_argument("--settle", type=float, default=11.0, help="seconds after each step")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    res: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "args": vars(args),
    }
    tmp = Path(tempfile.mkdtemp(prefix="dsa-bench-footprint-"))
    try:
        run(args, tmp, res)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    res["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report(res)
    write_results(f"footprint-{args.storage}", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``dsa backup DIR`` / ``dsa restore DIR``: a consistent copy of an
installation, taken while it runs (issue 14; decision 0025).

A backup directory holds::

    DIR/metadata/backup.json      format, schema version, when, row counts
    DIR/metadata/<table>.copy     each table's rows (COPY text format)
    DIR/objects/...               the objects those rows reference, laid out
                                  as a file:// store (chunks/ab/cd/abcd…)

**Backup.** The rows are read in one ``REPEATABLE READ`` transaction: one
snapshot of the whole database, however long the copy takes and whatever
is written meanwhile. Then every object the snapshot's commits reference
(commit, schemas, manifests, the manifests' chunks) is copied. Objects
never change and gc is held off for the duration (the lock an fsck takes,
shared), so what the snapshot references is still there to copy. Objects
already in ``DIR`` are skipped: a second backup into the same directory
copies only what is new. Caches are left out: read copies, stored exports,
line indexes and the node cache are rebuilt on use.

**Restore.** Into an empty installation only (no dataset, deleted or not;
the target's users are replaced by the backup's): the
schema is migrated to the version the backup was taken at (the code must be
of that version), the rows are loaded in foreign-key order, sequences set
past what was loaded, jobs that were queued or running when the backup was
taken are marked failed, and the objects the rows reference are copied into
the target's store.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import psycopg

from core import db
from core.errors import ObjectNotFound, StoredObjectError
from core.migrate import migration_files
from core.objects import get_manifest
from core.storage import LocalStore, ObjectStore, get_store
from features.integrity.errors import BackupError, TargetNotEmpty
from features.integrity.gc import locked
from features.jobs import service as jobs_service

FORMAT = 1
# copied, parents before children (restore loads them in this order)
TABLES = (
    "app_user",
    "api_token",
    "dataset",
    "dataset_permission",
    "quality_config",
    "webhook",
    "schedule",
    "commit",
    "commit_link",
    "ref",
    "ref_log",
    "upload",
    "job",
    "schedule_run",
    "dataset_object",
    "revoked_session",
    "audit_log",
)
# append-only (its triggers refuse TRUNCATE): restore adds the backup's
# entries after whatever the target logged, with new ids, in their order
APPEND_ONLY = ("audit_log",)
# not copied: the target's own (schema_migration), caches whose objects are
# not copied (layout, stored_export), what only running writers hold (write_hold),
# digests, statistics and quality reports recomputed when asked for
# (table_digest, table_stats, quality_result), imports' hints that spare a
# compare its reads (disjoint_rows), and webhooks' delivery logs
# (a restored installation does not post the source's events again)
SKIPPED = (
    "schema_migration",
    "layout",
    "stored_export",
    "write_hold",
    "table_digest",
    "disjoint_rows",
    "table_stats",
    "quality_result",
    "webhook_delivery",
    "webhook_attempt",
)


@dataclass
class Summary:
    tables: dict[str, int] = field(default_factory=dict)
    objects: int = 0
    objects_copied: int = 0
    bytes_copied: int = 0
    missing: list[str] = field(default_factory=list)  # referenced, not in the source store
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "tables": self.tables,
            "objects": self.objects,
            "objects_copied": self.objects_copied,
            "bytes_copied": self.bytes_copied,
            "missing": self.missing[:100],
            "missing_count": len(self.missing),
            "seconds": round(self.seconds, 3),
        }


def _schema_version() -> int:
    return max(v for v, _, _ in migration_files())


def referenced(
    conn: psycopg.Connection[Any], manifests_from: ObjectStore, unreadable: list[str]
) -> Iterator[str]:
    """The keys of every object the database's commits reference (each once),
    manifests read from ``manifests_from``; a manifest missing or damaged
    there goes to ``unreadable`` (its chunks cannot be named). A store that
    does not answer stops it."""
    seen: set[str] = set()
    rows = conn.execute("SELECT id, tables FROM commit ORDER BY dataset_id, generation")
    for row in rows.fetchall():
        keys = [f"commits/{row['id']}"]
        for t in (row["tables"] or {}).values():
            keys += [f"schemas/{t['schema']}", f"manifests/{t['manifest']}"]
            if f"manifests/{t['manifest']}" not in seen:
                try:
                    chunks = get_manifest(manifests_from, t["manifest"]).columns.chunks
                except StoredObjectError:
                    unreadable.append(f"manifests/{t['manifest']}")
                    continue
                keys += [f"chunks/{c}" for c in chunks]
        for key in keys:
            if key not in seen:
                seen.add(key)
                yield key


def _copy_objects(keys: Iterator[str], src: ObjectStore, dest: ObjectStore, s: Summary) -> None:
    for key in keys:
        s.objects += 1
        if dest.exists(key):
            continue
        try:
            with src.local_path(key) as path:
                s.bytes_copied += path.stat().st_size
                dest.put_file(key, path)
        except ObjectNotFound:
            s.missing.append(key)  # copied what there is; the caller says what is not
            continue
        s.objects_copied += 1


def backup(target: Path) -> Summary:
    """Write a backup of the installation into ``target`` (created if need be;
    objects already there are kept and not copied again)."""
    started = time.monotonic()
    s = Summary()
    target.mkdir(parents=True, exist_ok=True)
    if (target / "metadata").exists() and not (target / "metadata" / "backup.json").exists():
        raise BackupError(
            f"{target}/metadata exists and is not a backup's: choose another directory"
        )
    meta_tmp = target / f".metadata-{uuid.uuid4().hex[:8]}"
    meta_tmp.mkdir()
    dest = LocalStore(target / "objects")
    try:
        with locked(exclusive=False, what="backup"), db.read() as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            _portable_text(conn)
            try:
                taken_at = conn.execute("SELECT now() AS at").fetchone()["at"]  # type: ignore[index]
                for table in TABLES:
                    s.tables[table] = _dump(conn, table, meta_tmp / f"{table}.copy")
                _copy_objects(referenced(conn, get_store(), s.missing), get_store(), dest, s)
            finally:
                conn.execute("ROLLBACK")
        info = {
            "format": FORMAT,
            "schema_version": _schema_version(),
            "taken_at": taken_at.astimezone(UTC).isoformat(),
            "tables": s.tables,
            "objects": s.objects,
        }
        (meta_tmp / "backup.json").write_text(json.dumps(info, indent=2) + "\n")
        old = target / "metadata"
        if old.exists():
            os.replace(old, target / f".old-{uuid.uuid4().hex[:8]}")
        os.replace(meta_tmp, old)
        for stale in target.glob(".old-*"):
            shutil.rmtree(stale, ignore_errors=True)
    finally:
        shutil.rmtree(meta_tmp, ignore_errors=True)
    s.seconds = time.monotonic() - started
    return s


def _portable_text(conn: psycopg.Connection[Any]) -> None:
    """Times and intervals in COPY's text the same on every server, whatever
    its configuration (for this transaction)."""
    for setting, value in (
        ("TimeZone", "UTC"),
        ("DateStyle", "ISO"),
        ("IntervalStyle", "postgres"),
    ):
        conn.execute("SELECT set_config(%s, %s, true)", (setting, value))


def _dump(conn: psycopg.Connection[Any], table: str, path: Path) -> int:
    rows = 0
    with conn.cursor() as cur, path.open("wb") as f:
        with cur.copy(f'COPY "{table}" TO STDOUT') as copy:
            for part in copy:
                f.write(part)
        rows = cur.rowcount
    return rows


def read_info(source: Path) -> dict[str, Any]:
    try:
        info = json.loads((source / "metadata" / "backup.json").read_text())
    except (OSError, ValueError) as exc:
        raise BackupError(f"{source} holds no readable backup (metadata/backup.json)") from exc
    if info.get("format") != FORMAT:
        raise BackupError(
            f"{source}: backup format {info.get('format')!r}, this DSA reads {FORMAT}"
        )
    if info.get("schema_version") != _schema_version():
        raise BackupError(
            f"{source} was taken at schema version {info.get('schema_version')}; this DSA is at "
            f"{_schema_version()}: restore it with the DSA version that took it, then upgrade"
        )
    return dict(info)


def _empty_or_refuse(conn: psycopg.Connection[Any]) -> None:
    """A target with datasets is refused. Objects already in its store are
    not in the way: one key holds one content, and they are kept as found."""
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM dataset) AS yes").fetchone()
    if row and row["yes"]:
        raise TargetNotEmpty(
            "the target installation holds datasets (deleted ones count); restore only "
            "into an empty one"
        )


def restore(source: Path) -> Summary:
    """Restore the backup in ``source`` into the (migrated, empty) installation
    the settings name."""
    started = time.monotonic()
    info = read_info(source)
    s = Summary()
    store = get_store()
    with db.transaction() as conn:
        _portable_text(conn)
        _empty_or_refuse(conn)
        # (and the caches and logs that point at datasets: a target's own)
        emptied = [t for t in TABLES if t not in APPEND_ONLY] + [
            "disjoint_rows",
            "quality_result",
            "webhook_delivery",
            "webhook_attempt",
        ]
        conn.execute(f"TRUNCATE {', '.join(f'{chr(34)}{t}{chr(34)}' for t in emptied)}")
        for table in TABLES:
            s.tables[table] = _load(conn, table, source / "metadata" / f"{table}.copy")
            if s.tables[table] != info["tables"].get(table):
                raise BackupError(
                    f"{source}: {table} holds {s.tables[table]} rows, not as recorded"
                )
        # a restored copy (a drill, a staging copy) imports nothing until told
        conn.execute(
            "UPDATE schedule SET paused = true, paused_reason = 'restored from a backup: "
            "resume it where it should run' WHERE NOT paused"
        )
        conn.execute(
            "SELECT setval('commit_chain_seq', greatest((SELECT max(chain) FROM commit), 1))"
        )
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('ref_log', 'id'), "
            "greatest((SELECT max(id) FROM ref_log), 1))"
        )
        problem = {
            "type": "https://dsa.dev/problems/interrupted-by-restore",
            "title": "Interrupted",
            "status": 500,
            "code": "interrupted_by_restore",
            "detail": "the job was running when the backup was taken; run it again",
        }
        jobs_service.fail_unfinished(conn, problem)
        backup_store = LocalStore(source / "objects")
        _copy_objects(referenced(conn, backup_store, s.missing), backup_store, store, s)
    s.seconds = time.monotonic() - started
    return s


def _load(conn: psycopg.Connection[Any], table: str, path: Path) -> int:
    if not path.exists():
        raise BackupError(f"the backup has no {path.name}")
    into = f"{table}_restored" if table in APPEND_ONLY else table
    if table in APPEND_ONLY:
        conn.execute(f'CREATE TEMP TABLE "{into}" (LIKE "{table}") ON COMMIT DROP')
    with conn.cursor() as cur:
        with cur.copy(f'COPY "{into}" FROM STDIN') as copy, path.open("rb") as f:
            while part := f.read(1 << 20):
                copy.write(part)
        n = cur.rowcount
    if table in APPEND_ONLY:
        columns = [
            r["column_name"]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = %(t)s AND table_schema = 'public' AND column_name <> 'id' "
                "ORDER BY ordinal_position",
                {"t": table},
            )
        ]
        names = ", ".join(f'"{c}"' for c in columns)
        conn.execute(f'INSERT INTO "{table}" ({names}) SELECT {names} FROM "{into}" ORDER BY id')
    return n

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from core.migrate import migrate, migration_files


def _fresh_db(server_url: str) -> str:
    name = f"dsa_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server_url.rpartition("/")[0] + "/" + name


def test_migrations_apply_once_even_concurrently(stack: dict[str, str]) -> None:
    url = _fresh_db(stack["DSA_DATABASE_URL"])
    results: list[list[int]] = []
    threads = [threading.Thread(target=lambda: results.append(migrate(url))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    versions = [v for v, _, _ in migration_files()]
    assert sorted(v for r in results for v in r) == versions  # each applied exactly once
    assert migrate(url) == []  # and a second run is a no-op
    with psycopg.connect(url) as conn:
        recorded = [r[0] for r in conn.execute("SELECT version FROM schema_migration ORDER BY 1")]
    assert recorded == versions


def test_migrated_schema_matches_schema_sql(stack: dict[str, str]) -> None:
    """migrations/schema.sql is the reviewed picture of the schema the migrations build."""
    url = _fresh_db(stack["DSA_DATABASE_URL"])
    migrate(url)
    with psycopg.connect(url) as conn:
        got = _describe(conn)
    expected = (Path(__file__).parents[2] / "migrations" / "schema.sql").read_text()
    assert got == expected, "run: python -m tests.core.test_migrate > migrations/schema.sql"


def _describe(conn: psycopg.Connection) -> str:  # type: ignore[type-arg]
    lines = [
        "-- The schema built by the numbered migrations (checked by tests/core/test_migrate.py)."
    ]
    tables = conn.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' ORDER BY table_name"
    ).fetchall()
    for (table,) in tables:
        lines.append(f"\nTABLE {table}")
        for name, typ, nullable, default in conn.execute(
            "SELECT column_name, data_type, is_nullable, column_default "
            "FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
            "ORDER BY ordinal_position",
            (table,),
        ):
            null = "" if nullable == "YES" else " NOT NULL"
            dflt = f" DEFAULT {default}" if default else ""
            lines.append(f"  {name} {typ}{null}{dflt}")
        for cname, cdef in conn.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass AND contype <> 'n' ORDER BY conname",
            (table,),
        ):
            lines.append(f"  CONSTRAINT {cname} {cdef}")
        for (idef,) in conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = %s "
            "ORDER BY indexname",
            (table,),
        ):
            lines.append(f"  {idef}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # regenerate migrations/schema.sql against DSA_DATABASE_URL's server
    import os

    target = _fresh_db(os.environ["DSA_DATABASE_URL"])
    migrate(target)
    with psycopg.connect(target) as c:
        print(_describe(c), end="")

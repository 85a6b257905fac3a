"""Numbered SQL migrations, applied in order and recorded in a table.

Safe to run twice (applied versions are skipped) and from two processes at
once (a session advisory lock serialises runners). Each file runs in its own
transaction together with its bookkeeping row.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import structlog

log = structlog.get_logger(__name__)

_LOCK_ID = 0x0D5A_0001
APP_ROLE = "dsa_app"  # made by migrations/0009_app_role.sql
_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


def migration_files() -> list[tuple[int, str, Path]]:
    root = Path(str(resources.files("migrations")))
    out = []
    for path in sorted(root.iterdir()):
        m = _NAME.match(path.name)
        if m:
            out.append((int(m.group(1)), m.group(2), path))
    return out


def migrate(url: str) -> list[int]:
    """Apply pending migrations to the database at ``url``; returns the versions applied."""
    applied_now: list[int] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migration ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in conn.execute("SELECT version FROM schema_migration")}
            for version, name, path in migration_files():
                if version in done:
                    continue
                with conn.transaction():
                    conn.execute(path.read_text())  # type: ignore[call-overload]
                    conn.execute(
                        "INSERT INTO schema_migration (version, name) VALUES (%s, %s)",
                        (version, name),
                    )
                log.info("migration applied", version=version, name=name)
                applied_now.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
    return applied_now


def app_login(owner_url: str) -> str:
    """The URL of the same database as the application role, given LOGIN:
    for a server that trusts local connections (the embedded one, the test
    suite), where no password is needed. Deployments create the role with a
    password instead (docs/operations.md). The owner's URL when the role does
    not exist (the migrations could not create it)."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone():
            return owner_url
        conn.execute(f"ALTER ROLE {APP_ROLE} LOGIN")
    parts = urlsplit(owner_url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{APP_ROLE}@{host}"))

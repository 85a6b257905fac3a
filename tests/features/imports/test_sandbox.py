"""The import's sandbox (features/imports/sandbox.py): a file is read in a
child that holds no database connection, no database or broker URL and no
secret but the line path's two keys; the worker lands what it built."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from core import db
from core.config import get_settings
from core.errors import DatabaseNotConfigured
from core.isolation import run_isolated
from features.imports import sandbox


def test_a_confined_child_has_no_database_no_sockets_and_no_secret(
    stack: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with db.transaction() as conn:  # the parent holds an open connection as it forks
        conn.execute("SELECT 1")
    line_key = get_settings().key("line-hash")
    monkeypatch.setenv("DSA_JWT_SECRET", get_settings().effective_jwt_secret())
    report = tmp_path / "report"

    def child() -> None:
        sandbox.confine()
        found = []
        s = get_settings()
        found += [name for name in ("database_url", "redis_url", "jwt_secret") if getattr(s, name)]
        found += [
            n for n in ("DSA_DATABASE_URL", "DSA_REDIS_URL", "DSA_JWT_SECRET") if n in os.environ
        ]
        if s.key("line-hash") != line_key:
            found.append("line-hash key changed")
        try:
            s.key("jwt")
            found.append("jwt key")
        except RuntimeError:
            pass
        try:
            with db.transaction() as conn:
                conn.execute("SELECT 1")
            found.append("database reachable")
        except DatabaseNotConfigured:
            pass
        for fd in map(int, os.listdir("/proc/self/fd")):
            try:
                if fd > 2 and stat.S_ISSOCK(os.fstat(fd).st_mode):
                    found.append(f"socket fd {fd}")
            except OSError:
                pass
        report.write_text("\n".join(found))

    assert run_isolated(child, memory_bytes=0, cpu_s=20) == 0
    assert report.read_text() == ""
    with db.transaction() as conn:  # the parent's connections are untouched
        assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    assert get_settings().key("line-hash") == line_key


def test_the_relay_ignores_what_is_not_a_progress_line() -> None:
    relay = sandbox.Relay(job=None)  # type: ignore[arg-type]
    rest = relay._take(b"p 10 20\nx\np -1 5\np 1 2 3\n" + b"p " + b"9" * 500 + b" 1\np 30 40\np 5")
    assert (relay.rows, relay.bytes) == (30, 40)
    assert rest == b"p 5"

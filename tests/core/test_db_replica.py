"""``core.db.read_immutable``: which connection a read of immutable rows gets.

The "replica" here is the session's own database reached through the
replica pool (read-only sessions), which is enough to tell the connections
apart; tests/e2e/test_read_replica.py runs a real streaming standby."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from prometheus_client import REGISTRY

from core import db
from core.config import get_settings
from core.errors import NotFound


@pytest.fixture
def replica_set(stack: dict[str, str]) -> Iterator[None]:
    settings = get_settings()
    settings.database_read_url = stack["DSA_DATABASE_URL"]
    try:
        yield
    finally:
        settings.database_read_url = None
        db.close_pool()  # and forget that the replica rested


def _pid(conn: psycopg.Connection[Any]) -> int:
    return int(conn.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"])  # type: ignore[index]


def _count(outcome: str) -> float:
    """What ``/metrics`` says: ``dsa_replica_reads_total{outcome}``."""
    got = REGISTRY.get_sample_value("dsa_replica_reads_total", {"outcome": outcome})
    return got or 0.0


def test_unset_reads_run_on_the_callers_connection(stack: dict[str, str]) -> None:
    assert get_settings().database_read_url is None
    with db.read() as conn:
        assert db.read_immutable(conn, lambda c: c) is conn


@pytest.mark.usefixtures("replica_set")
def test_reads_outside_a_transaction_go_to_the_replica_in_read_only_sessions() -> None:
    with db.read() as conn:
        got = db.read_immutable(
            conn,
            lambda c: (_pid(c), c.execute("SHOW default_transaction_read_only").fetchone()),
        )
        assert got[0] != _pid(conn)
        assert got[1] == {"default_transaction_read_only": "on"}


@pytest.mark.usefixtures("replica_set")
def test_a_transaction_reads_on_its_own_connection() -> None:
    """Writes and what they read stay on the primary: a transaction must see its own rows."""
    with db.transaction() as conn:
        assert db.read_immutable(conn, lambda c: c) is conn
    with db.read() as conn, conn.transaction():
        assert db.read_immutable(conn, lambda c: c) is conn


@pytest.mark.usefixtures("replica_set")
def test_a_row_missing_on_the_replica_is_read_again_from_the_primary() -> None:
    seen = []

    def fn(c: psycopg.Connection[Any]) -> str:
        seen.append(c)
        if len(seen) == 1:
            raise NotFound("not replayed yet")
        return "found"

    missing = _count("missing")
    with db.read() as conn:
        assert db.read_immutable(conn, fn) == "found"
        assert seen[0] is not conn and seen[1] is conn
    assert _count("missing") == missing + 1


@pytest.mark.usefixtures("replica_set")
def test_a_failing_replica_hands_reads_to_the_primary_for_a_while() -> None:
    errors, skipped = _count("error"), _count("skipped")
    with db.read() as conn:
        # a write fails on a replica session (as on a hot standby); the primary answers
        got = db.read_immutable(
            conn, lambda c: (c, c.execute("SELECT nextval('commit_chain_seq')"))
        )
        assert got[0] is conn
        assert db.read_immutable(conn, lambda c: c) is conn  # resting: not asked
    assert (_count("error"), _count("skipped")) == (errors + 1, skipped + 1)

"""Commit graphs built directly through the commits service (no imports)."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from core.objects import Commit, commit_time
from features.commits import service as commits_service

_T0 = datetime(2024, 1, 1, tzinfo=UTC)
_n = itertools.count()


def commit(
    conn: psycopg.Connection[Any],
    dataset_id: str | uuid.UUID,
    *parents: str,
    message: str | None = None,
    at: datetime | None = None,
) -> str:
    """Record an empty commit with these parents; each call makes a new one."""
    n = next(_n)
    c = Commit(
        parents=tuple(parents),
        tables={},
        author="tester",
        created_at=commit_time(at or _T0 + timedelta(seconds=n)),
        message=message or f"commit {n}",
        provenance={"test": uuid.uuid4().hex},
    )
    return commits_service.record(conn, dataset_id=uuid.UUID(str(dataset_id)), commit=c)


def chain(
    conn: psycopg.Connection[Any], dataset_id: str | uuid.UUID, parent: str, n: int
) -> list[str]:
    """``n`` commits, each on the previous one; returns them oldest first."""
    out = []
    for _ in range(n):
        parent = commit(conn, dataset_id, parent)
        out.append(parent)
    return out

"""Commits: writing commit objects and their PostgreSQL mirror, history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from core import db
from core.errors import NotFound
from core.lru import LRU
from core.objects import Commit, put_object
from core.storage import get_store

Q = db.Queries(__file__)
ROOT_MESSAGE = "Create dataset"


def iso(ts: datetime) -> str:
    """Canonical commit time: UTC with microseconds and a 'Z'."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def create_root(
    conn: psycopg.Connection[Any], *, dataset_id: uuid.UUID, author: str, created_at: datetime
) -> str:
    commit = Commit(
        parents=(),
        tables={},
        author=author,
        created_at=iso(created_at),
        message=ROOT_MESSAGE,
        provenance={"dataset_id": str(dataset_id)},
    )
    return record(conn, dataset_id=dataset_id, commit=commit)


def record(conn: psycopg.Connection[Any], *, dataset_id: uuid.UUID, commit: Commit) -> str:
    """Store the commit object, then mirror it in PostgreSQL. Returns its id."""
    put_object(get_store(), "commit", commit)
    depth = 0
    if commit.parents:
        row = conn.execute(
            Q.depth_of, {"dataset_id": dataset_id, "id": commit.parents[0]}
        ).fetchone()
        if row is None:
            raise NotFound(f"parent commit {commit.parents[0]} is unknown", code="commit_not_found")
        depth = row["depth"] + 1
    conn.execute(
        Q.insert_commit,
        {
            "dataset_id": dataset_id,
            "id": commit.id,
            "parents": list(commit.parents),
            "author": commit.author,
            "message": commit.message,
            "created_at": commit.created_at,
            "tables": Jsonb({n: t.to_json() for n, t in commit.tables.items()}),
            "provenance": Jsonb(commit.provenance),
            "row_count": sum(t.row_count for t in commit.tables.values()),
            "table_count": len(commit.tables),
            "depth": depth,
        },
    )
    return commit.id


def get(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, commit_id: str) -> dict[str, Any]:
    row = conn.execute(Q.get_commit, {"dataset_id": dataset_id, "id": commit_id}).fetchone()
    if row is None:
        raise NotFound(f"commit {commit_id} does not exist", code="commit_not_found")
    return row


_known: LRU[tuple[uuid.UUID, str], bool] = LRU(max_items=100_000)


def exists(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, commit_id: str) -> bool:
    """Whether the dataset has this commit; remembered, since commits never go away."""
    key = (dataset_id, commit_id)
    if _known.get(key):
        return True
    found = conn.execute(Q.depth_of, {"dataset_id": dataset_id, "id": commit_id}).fetchone()
    if found is not None:
        _known.put(key, True)
    return found is not None


def ids_by_prefix(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, prefix: str) -> list[str]:
    rows = conn.execute(Q.by_prefix, {"dataset_id": dataset_id, "prefix": prefix}).fetchall()
    return [r["id"] for r in rows]


def history(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, head: str, *, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """First-parent history from ``head``, newest first, and its length."""
    total = get(conn, dataset_id, head)["depth"] + 1
    rows = conn.execute(
        Q.first_parent_history,
        {
            "dataset_id": dataset_id,
            "head": head,
            "stop": offset + limit,
            "offset": offset,
            "limit": limit,
        },
    ).fetchall()
    return rows, total

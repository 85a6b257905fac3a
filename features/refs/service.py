"""Refs: branches and tags, resolution of any ref spelling, compare-and-swap moves."""

from __future__ import annotations

import re
import uuid
from typing import Any

import psycopg

from core import db
from core.errors import Conflict, Invalid, NotFound
from features.commits import service as commits_service

Q = db.Queries(__file__)
_HEX = re.compile(r"^[0-9a-f]{7,64}$")
_REF_NAME = re.compile(r"^(?!.*\.\.)(?!/)(?!.*/$)[A-Za-z0-9._/-]{1,200}$")


def validate_name(name: str) -> None:
    if not _REF_NAME.match(name) or _HEX.match(name):
        raise Invalid(
            f"{name!r} is not a valid ref name (letters, digits, . _ - /; not a hex commit id)",
            code="invalid_ref_name",
        )


def create_branch_at(
    conn: psycopg.Connection[Any], *, dataset_id: uuid.UUID, name: str, commit_id: str, by: str
) -> dict[str, Any]:
    return _create(conn, dataset_id, name, "branch", commit_id, by, None)


def create_branch(
    conn: psycopg.Connection[Any], *, dataset_id: uuid.UUID, name: str, from_ref: str, by: str
) -> dict[str, Any]:
    """A new branch at the commit ``from_ref`` names."""
    commit_id = resolve(conn, dataset_id, from_ref)
    return _create(conn, dataset_id, name, "branch", commit_id, by, None)


def create_tag(
    conn: psycopg.Connection[Any],
    *,
    dataset_id: uuid.UUID,
    name: str,
    from_ref: str,
    by: str,
    message: str | None,
) -> dict[str, Any]:
    """A tag: an immutable name for the commit ``from_ref`` names."""
    commit_id = resolve(conn, dataset_id, from_ref)
    return _create(conn, dataset_id, name, "tag", commit_id, by, message)


def _create(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    name: str,
    kind: str,
    commit_id: str,
    by: str,
    message: str | None,
) -> dict[str, Any]:
    validate_name(name)
    try:
        with conn.transaction():
            row = conn.execute(
                Q.insert_ref,
                {
                    "dataset_id": dataset_id,
                    "name": name,
                    "kind": kind,
                    "commit_id": commit_id,
                    "message": message,
                    "by": by,
                },
            ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise Conflict(f"a ref named {name!r} already exists", code="ref_exists") from None
    assert row is not None
    return row


def list_refs(conn: psycopg.Connection[Any], dataset_id: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(Q.list_refs, {"dataset_id": dataset_id}).fetchall()


def get_branch(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, name: str) -> dict[str, Any]:
    row = conn.execute(Q.get_ref, {"dataset_id": dataset_id, "name": name}).fetchone()
    if row is None or row["kind"] != "branch":
        raise NotFound(f"branch {name!r} does not exist", code="branch_not_found")
    return row


def resolve(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, ref: str) -> str:
    """The commit id a ref names: a branch, a tag, a full id or a unique prefix (>= 7 hex)."""
    if _HEX.match(ref):  # ref names can never look like commit ids (validate_name)
        if len(ref) == 64 and commits_service.exists(conn, dataset_id, ref):
            return ref
        ids = commits_service.ids_by_prefix(conn, dataset_id, ref)
        if len(ids) == 1:
            return ids[0]
        if len(ids) > 1:
            raise Conflict(
                f"the commit prefix {ref!r} is ambiguous; give more characters",
                code="ref_ambiguous",
            )
    else:
        row = conn.execute(Q.get_ref, {"dataset_id": dataset_id, "name": ref}).fetchone()
        if row is not None:
            return str(row["commit_id"])
    raise NotFound(f"ref {ref!r} does not exist", code="ref_not_found")


def cas_move(
    conn: psycopg.Connection[Any],
    *,
    dataset_id: uuid.UUID,
    name: str,
    new: str,
    expected: str,
) -> None:
    """Move branch ``name`` from ``expected`` to ``new``, or raise ``Conflict``."""
    n = conn.execute(
        Q.cas_move, {"dataset_id": dataset_id, "name": name, "new": new, "expected": expected}
    ).rowcount
    if n != 1:
        raise Conflict(
            f"branch {name!r} is no longer at {expected[:12]}; it moved while this ran",
            code="ref_conflict",
            expected_commit_id=expected,
        )

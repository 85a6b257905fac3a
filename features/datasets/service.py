"""Datasets, their visibility and per-user roles.

Access rule (one place): admins see everything; ``public`` datasets are
readable by anyone, ``internal`` ones by any signed-in user, ``private`` ones
only by users with a role. A caller who may not read a dataset gets 404, as if
it did not exist; one who may read but lacks the role gets 403.
"""

from __future__ import annotations

import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import psycopg

from core import audit, db, ratelimit
from core.config import get_settings
from features.auth.errors import ScopeExceeded, UserNotFound
from features.auth.service import User, require_unlimited, user_by_name
from features.commits import service as commits_service
from features.datasets.catalog import render_readme
from features.datasets.errors import (
    DatasetExists,
    DatasetNotFound,
    InvalidRole,
    LastAdmin,
    PermissionNotFound,
    RoleRequired,
)
from features.refs import service as refs_service

Q = db.Queries(__file__)

# the name a request spelled its dataset with (``api.names``): a 404 repeats
# it, never the id it stands for (which would tell that a hidden one exists)
requested_name: ContextVar[str | None] = ContextVar("dsa_dataset_name", default=None)


def id_by_name(conn: psycopg.Connection[Any], name: str) -> uuid.UUID | None:
    """The live dataset called ``name`` (whoever may see it: the caller's
    permission is checked by ``require`` on the id), or None."""
    row = conn.execute(Q.id_by_name, {"name": name}).fetchone()
    return row["id"] if row else None


ROLES = {"read": 1, "write": 2, "admin": 3}


def _dataset(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: row[k]
        for k in (
            "id",
            "name",
            "description",
            "primary_key",
            "visibility",
            "default_branch",
            "created_at",
            "updated_at",
            "tags",
            "readme",
        )
    }


def create_dataset(
    conn: psycopg.Connection[Any],
    user: User,
    *,
    name: str,
    description: str = "",
    primary_key: list[str] | None = None,
    visibility: str = "private",
    tags: list[str] | None = None,
    readme: str = "",
) -> dict[str, Any]:
    dataset_id = uuid.uuid4()
    require_unlimited(user, "creating a dataset")
    try:
        with conn.transaction():
            row = conn.execute(
                Q.insert_dataset,
                {
                    "id": dataset_id,
                    "name": name,
                    "description": description,
                    "primary_key": primary_key,
                    "visibility": visibility,
                    "created_by": user.id,
                    "tags": tags or [],
                    "readme": readme,
                },
            ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise DatasetExists(f"a dataset named {name!r} already exists") from None
    assert row is not None
    conn.execute(Q.upsert_permission, {"id": dataset_id, "user_id": user.id, "role": "admin"})
    root = commits_service.create_root(
        conn, dataset_id=dataset_id, author=user.username, created_at=row["created_at"]
    )
    refs_service.create_branch_at(
        conn, dataset_id=dataset_id, name=row["default_branch"], commit_id=root, by=user.username
    )
    audit.record(conn, "dataset.create", actor=user, dataset_id=dataset_id, target=name)
    return _dataset(row)


def role_of(user: User | None, row: dict[str, Any]) -> int:
    if user is not None and user.is_admin:
        return ROLES["admin"]
    explicit = ROLES.get(row.get("role") or "", 0) if user is not None else 0
    implied = 0
    if row["visibility"] == "public" or (row["visibility"] == "internal" and user is not None):
        implied = ROLES["read"]
    return max(explicit, implied)


def require(
    conn: psycopg.Connection[Any], user: User | None, dataset_id: uuid.UUID, role: str = "read"
) -> dict[str, Any]:
    """The dataset if the caller holds ``role`` on it; 404 if it cannot see it, else 403.

    The one permission check: route and page handlers call it before any other
    service function, which then trusts the dataset it is given (decision 0017)."""
    row = conn.execute(
        Q.dataset_with_role, {"id": dataset_id, "user_id": user.id if user else None}
    ).fetchone()
    have = role_of(user, row) if row else 0
    if row is None or have == 0:
        raise DatasetNotFound(f"dataset {requested_name.get() or dataset_id} does not exist")
    if have >= ROLES[role] and user is not None and user.limited:
        have = _within_token(user, dataset_id, row, have)
    if have < ROLES[role]:
        raise RoleRequired(f"this needs the {role} role on the dataset")
    return _dataset(row)


def require_branch(
    conn: psycopg.Connection[Any], user: User | None, dataset_id: uuid.UUID, branch: str
) -> dict[str, Any]:
    """The dataset if the caller may change ``branch`` (land an import, a
    merge or a revert on it, reset it): the write role, and the admin role
    when the branch is protected (decision 0029). 404 for a missing branch."""
    ds = require(conn, user, dataset_id, "write")
    if refs_service.get_branch(conn, dataset_id, branch)["protected"]:
        try:
            require(conn, user, dataset_id, "admin")
        except RoleRequired:
            raise RoleRequired(
                f"branch {branch!r} is protected: only the dataset's admins may change it"
            ) from None
    return ds


def _within_token(user: User, dataset_id: uuid.UUID, row: dict[str, Any], have: int) -> int:
    """``have`` capped by the API token's scope; outside its datasets the
    token can do what an anonymous caller can (read a public dataset)."""
    ceiling = user.ceiling(dataset_id)
    if ceiling is None:
        if row["visibility"] == "public":
            return ROLES["read"]
        raise ScopeExceeded("this token is not for this dataset")
    if have > ROLES[ceiling]:
        return ROLES[ceiling]
    return have


def list_datasets(
    conn: psycopg.Connection[Any], user: User | None, *, q: str | None, page: int, per_page: int
) -> tuple[list[dict[str, Any]], int]:
    rows = conn.execute(
        Q.list_visible,
        {
            "user_id": user.id if user else None,
            "is_admin": bool(user and user.is_admin),
            "only": sorted(user.datasets) if user and user.datasets is not None else None,
            "q": _like(q),
            "limit": per_page,
            "offset": (page - 1) * per_page,
        },
    ).fetchall()
    total = rows[0]["total"] if rows else 0
    if not rows and page > 1:  # past the end: still report the total
        probe = conn.execute(
            Q.list_visible,
            {
                "user_id": user.id if user else None,
                "is_admin": bool(user and user.is_admin),
                "only": sorted(user.datasets) if user and user.datasets is not None else None,
                "q": _like(q),
                "limit": 1,
                "offset": 0,
            },
        ).fetchone()
        total = probe["total"] if probe else 0
    return [_dataset(r) for r in rows], total


def _like(q: str | None) -> str | None:
    """An ILIKE pattern matching ``q`` anywhere, with its own % and _ taken literally."""
    if not q:
        return None
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def every(conn: psycopg.Connection[Any], dataset: str | None = None) -> list[dict[str, Any]]:
    """Every dataset (id, name, deleted_at), soft-deleted ones too, or the one
    named or with the id ``dataset``: what a check of the installation covers."""
    return conn.execute(Q.every_dataset, {"dataset": dataset}).fetchall()


def update_dataset(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, changes: dict[str, Any], *, actor: User
) -> dict[str, Any]:
    """Changes a dataset the caller holds ``admin`` on (checked by ``require``)."""
    try:
        with conn.transaction():
            row = conn.execute(
                Q.update_dataset,
                {
                    "id": dataset_id,
                    "name": changes.get("name"),
                    "description": changes.get("description"),
                    "set_primary_key": "primary_key" in changes,
                    "primary_key": changes.get("primary_key"),
                    "visibility": changes.get("visibility"),
                    "tags": changes.get("tags"),
                    "readme": changes.get("readme"),
                },
            ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise DatasetExists(f"a dataset named {changes.get('name')!r} already exists") from None
    assert row is not None
    audit.record(
        conn,
        "dataset.update",
        actor=actor,
        dataset_id=dataset_id,
        target=row["name"],
        details={k: v for k, v in changes.items() if k not in ("description", "readme")},
    )
    return _dataset(row)


def delete_dataset(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, *, actor: User) -> None:
    """Soft-deletes a dataset the caller holds ``admin`` on (checked by ``require``)."""
    conn.execute(Q.soft_delete, {"id": dataset_id})
    audit.record(conn, "dataset.delete", actor=actor, dataset_id=dataset_id)


def storage(conn: psycopg.Connection[Any], dataset_id: uuid.UUID) -> dict[str, int]:
    """``{bytes, unique_bytes}``: the stored bytes the dataset's commits
    reference, and those no other dataset does (counted as commits land,
    made exact by each gc)."""
    return commits_service.storage(conn, dataset_id)


def restore_dataset(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, *, actor: User
) -> dict[str, Any]:
    """Undo a soft delete (an installation admin's, checked by the caller)
    until garbage collection purges the dataset (``DSA_DELETED_RETENTION``);
    409 when a live dataset took its name meanwhile."""
    try:
        with conn.transaction():
            row = conn.execute(Q.restore, {"id": dataset_id}).fetchone()
    except psycopg.errors.UniqueViolation:
        raise DatasetExists(
            "a live dataset has this dataset's name; rename that one first"
        ) from None
    if row is None:
        raise DatasetNotFound(f"no deleted dataset has the id {dataset_id}")
    audit.record(conn, "dataset.restore", actor=actor, dataset_id=dataset_id, target=row["name"])
    return _dataset(row)


def purge_deleted(conn: psycopg.Connection[Any], older_than_s: float) -> list[dict[str, Any]]:
    """Delete for good the datasets soft-deleted over ``older_than_s`` ago
    (garbage collection then reclaims their objects); which went."""
    return conn.execute(Q.purge_deleted, {"older_than_s": older_than_s}).fetchall()


def list_permissions(conn: psycopg.Connection[Any], dataset_id: uuid.UUID) -> list[dict[str, Any]]:
    """The roles on a dataset the caller may read (checked by ``require``)."""
    return conn.execute(Q.list_permissions, {"id": dataset_id}).fetchall()


def grant(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, username: str, role: str, *, actor: User
) -> dict[str, Any]:
    """Gives ``username`` a role (the caller's ``admin`` role checked by
    ``require``); 409 when that would demote the dataset's last admin."""
    if role not in ROLES:
        raise InvalidRole(f"unknown role {role!r}")
    target = _member(conn, username, actor)
    with conn.transaction():
        conn.execute(Q.lock_permissions, {"id": dataset_id})
        conn.execute(Q.upsert_permission, {"id": dataset_id, "user_id": target.id, "role": role})
        if conn.execute(Q.count_admins, {"id": dataset_id}).fetchone()["n"] == 0:  # type: ignore[index]
            raise LastAdmin("a dataset must keep at least one admin; make another admin first")
        audit.record(
            conn,
            "permission.grant",
            actor=actor,
            dataset_id=dataset_id,
            target=target.username,
            details={"role": role},
        )
    return {"username": target.username, "role": role, "granted_at": datetime.now(UTC)}


def _member(conn: psycopg.Connection[Any], username: str, actor: User) -> User:
    """The user a grant or revoke names. Whether a username exists is the
    one thing a dataset admin learns here that they could not otherwise, so
    names that do not exist count against ``DSA_RATE_LIMIT_USER_LOOKUPS``
    per caller, checked before the lookup (once over it, every name gets
    429, known or not: the answer says nothing). Installation
    administrators list users anyway and are not counted."""
    rule = "" if actor.is_admin else get_settings().rate_limit_user_lookups
    if rule:
        ratelimit.check(rule, "user-lookup", str(actor.id), what="grants to unknown usernames")
    try:
        return user_by_name(conn, username)
    except UserNotFound:
        if rule:
            ratelimit.count(rule, "user-lookup", str(actor.id))
        raise


def revoke(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, username: str, *, actor: User
) -> None:
    """Removes ``username``'s role (the caller's ``admin`` role checked by ``require``)."""
    target = _member(conn, username, actor)
    conn.execute(Q.lock_permissions, {"id": dataset_id})
    n = conn.execute(Q.delete_permission, {"id": dataset_id, "user_id": target.id}).rowcount
    if n == 0:
        raise PermissionNotFound(f"{username!r} has no role on this dataset")
    if conn.execute(Q.count_admins, {"id": dataset_id}).fetchone()["n"] == 0:  # type: ignore[index]
        raise LastAdmin("a dataset must keep at least one admin")
    audit.record(
        conn, "permission.revoke", actor=actor, dataset_id=dataset_id, target=target.username
    )


def readme_html(dataset: dict[str, Any]) -> str:
    """The dataset's readme rendered and sanitised (``catalog.render_readme``);
    empty without one."""
    return render_readme(dataset["readme"]) if dataset.get("readme") else ""

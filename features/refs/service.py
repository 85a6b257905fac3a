"""Refs: branches and tags, resolution of any ref spelling, compare-and-swap
moves, protection, deletion and the reflog.

Every change of a ref goes through this module and writes its reflog row in
the same statement, so the log can never disagree with the ref:

- ``create``: a branch or tag appears (old = null, new = its commit);
- ``move``: a branch moves by compare-and-swap (imports, merges, resets);
- ``protect`` / ``unprotect``: the branch's protection changes (old = new);
- ``delete``: the ref disappears (new = null).

Protection: a protected branch cannot be deleted and cannot be moved by
``move_branch`` (a reset) to a commit that does not descend from where it
stands. ``cas_move``, which imports and merges use, is not limited: they
only ever advance a branch. Tags never move.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import structlog

from core import audit, db, failpoints, queue
from core.errors import InvalidRequest, NotFound
from core.objects import Commit
from features.commits import service as commits_service
from features.layouts import service as layouts_service
from features.refs import revisions
from features.refs.errors import (
    BranchNotFound,
    BranchProtected,
    DefaultBranch,
    InvalidRange,
    InvalidRefName,
    RefAmbiguous,
    RefConflict,
    RefExists,
    RefNotFound,
    TagNotFound,
)
from features.webhooks import service as webhooks_service

Q = db.Queries(__file__)
_HEX = re.compile(r"^[0-9a-f]{7,64}$")
MAX_RANGE_CHARS = 2 * 256 + 3  # two ref spellings and "..."
_REF_NAME = re.compile(r"^(?!.*\.\.)(?!/)(?!.*/$)[A-Za-z0-9._/-]{1,200}$")


def validate_name(name: str) -> None:
    if not _REF_NAME.match(name) or _HEX.match(name):
        raise InvalidRefName(
            f"{name!r} is not a valid ref name (letters, digits, . _ - /; not a hex commit id)",
        )


def create_branch_at(
    conn: psycopg.Connection[Any],
    *,
    dataset_id: uuid.UUID,
    name: str,
    commit_id: str,
    by: str,
    reason: str = "",
) -> dict[str, Any]:
    return _create(conn, dataset_id, name, "branch", commit_id, by, None, reason)


def create_branch(
    conn: psycopg.Connection[Any],
    *,
    dataset_id: uuid.UUID,
    name: str,
    from_ref: str,
    by: str,
    reason: str = "",
) -> dict[str, Any]:
    """A new branch at the commit ``from_ref`` names."""
    commit_id = resolve(conn, dataset_id, from_ref)
    return _create(conn, dataset_id, name, "branch", commit_id, by, None, reason)


def create_tag(
    conn: psycopg.Connection[Any],
    *,
    dataset_id: uuid.UUID,
    name: str,
    from_ref: str,
    by: str,
    message: str | None,
    reason: str = "",
) -> dict[str, Any]:
    """A tag: an immutable name for the commit ``from_ref`` names; ``by`` is the tagger."""
    commit_id = resolve(conn, dataset_id, from_ref)
    return _create(conn, dataset_id, name, "tag", commit_id, by, message, reason)


def _create(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    name: str,
    kind: str,
    commit_id: str,
    by: str,
    message: str | None,
    reason: str,
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
                    "reason": reason,
                },
            ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise RefExists(f"a ref named {name!r} already exists") from None
    assert row is not None
    audit.record(
        conn,
        "ref.create",
        actor=by,
        dataset_id=dataset_id,
        target=name,
        details={"kind": kind, "commit_id": commit_id},
    )
    return row


def list_refs(conn: psycopg.Connection[Any], dataset_id: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(Q.list_refs, {"dataset_id": dataset_id}).fetchall()


def get_ref(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, name: str, kind: str
) -> dict[str, Any]:
    """The branch or tag (``kind``) called ``name``."""
    row = conn.execute(Q.get_ref, {"dataset_id": dataset_id, "name": name}).fetchone()
    if row is None or row["kind"] != kind:
        raise (BranchNotFound if kind == "branch" else TagNotFound)(
            f"{kind} {name!r} does not exist"
        )
    return row


def get_branch(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, name: str) -> dict[str, Any]:
    return get_ref(conn, dataset_id, name, "branch")


def _lock(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, name: str, kind: str
) -> dict[str, Any]:
    row = conn.execute(Q.lock_ref, {"dataset_id": dataset_id, "name": name}).fetchone()
    if row is None or row["kind"] != kind:
        raise (BranchNotFound if kind == "branch" else TagNotFound)(
            f"{kind} {name!r} does not exist"
        )
    return row


def resolve(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, ref: str) -> str:
    """The commit id a ref names: a branch, a tag, a full id or a unique
    prefix (>= 7 hex), with any revision suffixes (``~N``, ``^N``, ``@{…}``:
    ``revisions``)."""
    if revisions.MARKS.search(ref):
        base, parts = revisions.split(ref)
        return revisions.apply(
            conn, dataset_id, ref, base, parts, lambda b: _resolve(conn, dataset_id, b)
        )
    return _resolve(conn, dataset_id, ref)


def _resolve(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, ref: str) -> str:
    if _HEX.match(ref):  # ref names can never look like commit ids (validate_name)
        if len(ref) == 64 and commits_service.exists(conn, dataset_id, ref):
            return ref
        ids = commits_service.ids_by_prefix(conn, dataset_id, ref)
        if len(ids) == 1:
            return ids[0]
        if len(ids) > 1:
            raise RefAmbiguous(
                f"the commit prefix {ref!r} is ambiguous; give more characters",
            )
    else:
        row = conn.execute(Q.get_ref, {"dataset_id": dataset_id, "name": ref}).fetchone()
        if row is not None:
            return str(row["commit_id"])
    raise RefNotFound(f"ref {ref!r} does not exist")


def cas_move(
    conn: psycopg.Connection[Any],
    *,
    dataset_id: uuid.UUID,
    name: str,
    new: str,
    expected: str,
    by: str = "system",
    reason: str = "",
) -> None:
    """Move branch ``name`` from ``expected`` to ``new``, or raise ``Conflict``.

    The move and its reflog row (``by``, ``reason``) are one statement."""
    row = conn.execute(
        Q.cas_move,
        {
            "dataset_id": dataset_id,
            "name": name,
            "new": new,
            "expected": expected,
            "by": by,
            "reason": reason,
        },
    ).fetchone()
    if row is None or row["n"] != 1:
        raise RefConflict(
            f"branch {name!r} is no longer at {expected[:12]}; it moved while this ran",
            expected_commit_id=expected,
        )
    audit.record(
        conn,
        "ref.move",
        actor=by,
        dataset_id=dataset_id,
        target=name,
        details={"from": expected, "to": new, "reason": reason},
    )
    webhooks_service.ref_moved(conn, dataset_id, name, new, expected, by=by, reason=reason)
    layouts_service.follow(conn, expected, new)  # read copies follow the branch
    # statistics too (the stats feature's task, sent by name: stats reads refs)
    db.after_commit(conn, lambda: _send_quietly("stats.follow", expected, new))
    # and the catalog's column names (the datasets feature's task: it reads refs)
    db.after_commit(conn, lambda: _send_quietly("datasets.index", str(dataset_id), new))
    db.after_commit(conn, lambda: _send_quietly("quality.follow", str(dataset_id), new, name))


def land(
    *,
    dataset_id: uuid.UUID,
    branch: str,
    commit: Commit,
    by: str,
    reason: str,
    before: Callable[[psycopg.Connection[Any]], None] | None = None,
    then: Callable[[psycopg.Connection[Any], str], None] | None = None,
    action: str = "import",
    details: dict[str, Any] | None = None,
) -> str:
    """The one way a new commit reaches a branch (imports, merges, reverts):
    in one short transaction, run ``before(conn)`` (an import's check that
    its job still runs), record ``commit`` (its object and its mirror), move
    ``branch`` from the commit's first parent to it by compare-and-swap with
    its reflog row (``by``, ``reason``), and run ``then(conn, commit_id)``
    (an import's job success), with the audit log's ``action`` entry; all of
    it or none. The commit's objects (schemas, manifests, chunks) are written
    before, outside any transaction.

    Raises ``RefConflict`` when the branch is no longer at the first parent;
    nothing is recorded then, and the caller may rebuild on the new head."""
    with db.transaction() as conn:
        if before is not None:
            before(conn)
        commit_id = commits_service.record(conn, dataset_id=dataset_id, commit=commit)
        failpoints.hit("commit_recorded")
        cas_move(
            conn,
            dataset_id=dataset_id,
            name=branch,
            new=commit_id,
            expected=commit.parents[0],
            by=by,
            reason=reason,
        )
        failpoints.hit("ref_moved")
        webhooks_service.committed(conn, dataset_id, branch, commit_id, commit, action, by=by)
        audit.record(
            conn,
            action,
            actor=by,
            dataset_id=dataset_id,
            target=branch,
            details={"commit_id": commit_id, **(details or {})},
        )
        if then is not None:
            then(conn, commit_id)
        failpoints.hit("job_marked")
    failpoints.hit("landed")
    return commit_id


def move_branch(
    conn: psycopg.Connection[Any],
    *,
    dataset_id: uuid.UUID,
    name: str,
    to: str,
    expected: str,
    by: str,
    reason: str = "",
) -> dict[str, Any]:
    """Reset branch ``name`` to the commit ``to`` names (any ref spelling), if
    it still stands at ``expected`` (a commit id or unique prefix).

    409 ``ref_conflict`` when it moved on; 409 ``branch_protected`` when the
    branch is protected and ``to`` does not descend from where it stands."""
    row = _lock(conn, dataset_id, name, "branch")
    new = resolve(conn, dataset_id, to)
    want = _expected(conn, dataset_id, expected)
    if row["commit_id"] != want:
        raise RefConflict(
            f"branch {name!r} is at {row['commit_id'][:12]}, not at {expected[:12]}",
            expected_commit_id=want or expected,
            commit_id=row["commit_id"],
        )
    current = str(row["commit_id"])
    if row["protected"] and not commits_service.is_ancestor(conn, dataset_id, current, new):
        raise BranchProtected(
            f"branch {name!r} is protected: it only moves forward, to commits that "
            f"descend from {current[:12]}; unprotect it first to reset it"
        )
    cas_move(
        conn, dataset_id=dataset_id, name=name, new=new, expected=current, by=by, reason=reason
    )
    return get_branch(conn, dataset_id, name)


def _expected(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, expected: str) -> str | None:
    """The commit id an ``expected_commit_id`` names (a full id or unique prefix),
    or None when no commit has it (so no branch can be there)."""
    if not _HEX.match(expected):
        raise InvalidRequest(
            "expected_commit_id must be a commit id or a prefix of at least 7 hex characters",
            errors=[{"field": "expected_commit_id", "message": "not a commit id"}],
        )
    try:
        return resolve(conn, dataset_id, expected)
    except NotFound:
        return None


def set_protected(
    conn: psycopg.Connection[Any],
    *,
    dataset_id: uuid.UUID,
    name: str,
    protected: bool,
    by: str,
    reason: str = "",
) -> dict[str, Any]:
    """Protect or unprotect a branch (logged when it changes)."""
    _lock(conn, dataset_id, name, "branch")
    conn.execute(
        Q.set_protected,
        {
            "dataset_id": dataset_id,
            "name": name,
            "protected": protected,
            "by": by,
            "reason": reason,
        },
    )
    audit.record(
        conn,
        "ref.protect",
        actor=by,
        dataset_id=dataset_id,
        target=name,
        details={"protected": protected},
    )
    return get_branch(conn, dataset_id, name)


def delete_branch(
    conn: psycopg.Connection[Any],
    *,
    dataset_id: uuid.UUID,
    name: str,
    default_branch: str,
    by: str,
    reason: str = "",
    expected: str | None = None,
) -> None:
    """Delete a branch; the dataset's default branch and protected branches
    refuse (409). With ``expected``, only if the branch is still there."""
    row = _lock(conn, dataset_id, name, "branch")
    if name == default_branch:
        raise DefaultBranch(
            f"{name!r} is the dataset's default branch and cannot be deleted",
        )
    if row["protected"]:
        raise BranchProtected(f"branch {name!r} is protected; unprotect it first")
    if expected is not None:
        want = _expected(conn, dataset_id, expected)
        if row["commit_id"] != want:
            raise RefConflict(
                f"branch {name!r} is at {row['commit_id'][:12]}, not at {expected[:12]}",
                expected_commit_id=want or expected,
                commit_id=row["commit_id"],
            )
    _delete(conn, dataset_id, name, "branch", by, reason)


def delete_tag(
    conn: psycopg.Connection[Any], *, dataset_id: uuid.UUID, name: str, by: str, reason: str = ""
) -> None:
    _lock(conn, dataset_id, name, "tag")
    _delete(conn, dataset_id, name, "tag", by, reason)


def _delete(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, name: str, kind: str, by: str, reason: str
) -> None:
    conn.execute(
        Q.delete_ref,
        {"dataset_id": dataset_id, "name": name, "kind": kind, "by": by, "reason": reason},
    )
    audit.record(
        conn, "ref.delete", actor=by, dataset_id=dataset_id, target=name, details={"kind": kind}
    )


def log(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, name: str, *, offset: int, limit: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the reflog of ``name`` (also of a deleted ref), newest first, and its length."""
    total = conn.execute(Q.ref_log_count, {"dataset_id": dataset_id, "name": name}).fetchone()
    n = int(total["n"]) if total else 0
    if n == 0:
        raise RefNotFound(f"no ref named {name!r} was ever recorded")
    rows = conn.execute(
        Q.ref_log, {"dataset_id": dataset_id, "name": name, "offset": offset, "limit": limit}
    ).fetchall()
    return rows, n


def resolve_range(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, spec: str
) -> tuple[str, str]:
    """The commit ids of ``a...b`` (each side any ref spelling).

    Ref names never hold ``..``; only a name that starts or ends with ``.``
    makes more than one split possible (three at most), and the first split
    whose sides both resolve wins. A longer spec, or one with more splits,
    names no two refs: refused before any lookup (each split costs two)."""
    if len(spec) > MAX_RANGE_CHARS:
        raise InvalidRange(f"a range is at most {MAX_RANGE_CHARS} characters: two refs as a...b")
    splits = []
    i = spec.find("...")
    while i >= 0:
        if i and spec[i + 3 :]:
            splits.append((spec[:i], spec[i + 3 :]))
        i = spec.find("...", i + 1)
    if not splits or len(splits) > 3:
        raise InvalidRange(f"expected two refs as a...b, not {spec[:80]!r}")
    for n, (a, b) in enumerate(splits):
        try:
            return resolve(conn, dataset_id, a), resolve(conn, dataset_id, b)
        except NotFound:
            if n == len(splits) - 1:
                raise
    raise AssertionError("unreachable")


def retained_commits(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, since: Any) -> set[str]:
    """The commits the dataset's reflog names (before or after a change)
    since ``since``: inside the retention window, they are kept."""
    rows = conn.execute(Q.retained_commits, {"dataset_id": dataset_id, "since": since})
    return {r["id"] for r in rows}


def expire_log(conn: psycopg.Connection[Any], before: Any) -> int:
    """Delete the reflog entries older than ``before``; how many went."""
    return conn.execute(Q.expire_log, {"before": before}).rowcount


def _send_quietly(task: str, *args: str) -> None:
    """Send a cache's task after a move; a broker that is down is logged,
    never raised (the move has committed; the cache fills when asked)."""
    try:
        queue.enqueue(task, *args)
    except Exception:
        structlog.get_logger(__name__).warning("could not send a task", task=task, exc_info=True)

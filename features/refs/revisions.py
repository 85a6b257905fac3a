"""Revision suffixes on any ref spelling, as Git has them:

- ``REF~N``: the N-th first-parent ancestor (``~`` alone: ``~1``);
- ``REF^N``: the N-th parent (``^`` alone: ``^1``; ``^0``: the commit itself);
- ``NAME@{N}``: the value branch or tag ``NAME`` had N changes ago in the
  reflog (``@{0}``: now);
- ``NAME@{TIME}``: the value it had at ``TIME``: an ISO 8601 date or time
  (``2026-12-01``, ``2026-12-01T09:30:00Z``; without a zone: UTC), or
  ``N units ago`` (seconds, minutes, hours, days, weeks; spaces or dots).

Suffixes chain left to right (``main@{yesterday}`` is not a form:
``main@{1 day ago}~2^2`` is). Ref names never hold ``~ ^ @ { }``
(``validate_name``), so the base is everything before the first of them.
A suffix that cannot be read: 400 ``invalid_revision`` naming it; one that
leads nowhere (past the root, a parent the commit lacks, a time before the
ref existed or past the reflog's retention): 404 ``revision_not_found``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from core import db
from features.commits import service as commits_service
from features.refs.errors import InvalidRevision, RevisionNotFound

Q = db.Queries(__file__)
MARKS = re.compile(r"[~^@]")
_SUFFIX = re.compile(r"~(\d*)|\^(\d*)|@\{([^{}]*)\}")
_AGO = re.compile(r"^(\d+)[ .](second|minute|hour|day|week)s?[ .]ago$")
MAX_SUFFIXES = 32
MAX_STEPS = 1_000_000


def split(spec: str) -> tuple[str, list[str]]:
    """The base ref and its suffixes, each as written; InvalidRevision for
    text that is none."""
    m = MARKS.search(spec)
    if m is None:
        return spec, []
    base, rest = spec[: m.start()], spec[m.start() :]
    if not base:
        raise InvalidRevision(f"{spec!r} names no ref before {rest[:40]!r}", part=rest[:40])
    parts: list[str] = []
    pos = 0
    while pos < len(rest):
        sm = _SUFFIX.match(rest, pos)
        if sm is None:
            bad = rest[pos : pos + 40]
            raise InvalidRevision(
                f"cannot read {bad!r} in {spec[:80]!r}: expected ~N, ^N or @{{…}}", part=bad
            )
        parts.append(sm.group(0))
        pos = sm.end()
    if len(parts) > MAX_SUFFIXES:
        raise InvalidRevision(f"at most {MAX_SUFFIXES} suffixes", part=rest[:40])
    return base, parts


def _number(text: str, part: str) -> int:
    n = int(text) if text else 1
    if n > MAX_STEPS:
        raise InvalidRevision(f"{part!r}: at most {MAX_STEPS:,} steps", part=part)
    return n


def when(text: str, part: str) -> datetime:
    """The time ``@{TIME}`` names (UTC)."""
    t = text.strip().lower()
    m = _AGO.match(t)
    if m:
        n = int(m.group(1))
        return datetime.now(UTC) - timedelta(**{m.group(2) + "s": n})
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidRevision(
            f"{part!r}: not a time (an ISO 8601 date or time, or 'N hours ago')", part=part
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def apply(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    spec: str,
    base: str,
    parts: list[str],
    resolve_base: Callable[[str], str],
) -> str:
    """The commit id ``base`` followed by ``parts`` names."""
    start = 0
    if parts and parts[0].startswith("@{"):
        commit = _from_reflog(conn, dataset_id, base, parts[0])
        start = 1
    else:
        commit = resolve_base(base)
    for part in parts[start:]:
        if part.startswith("@{"):
            raise InvalidRevision(
                f"{part!r} in {spec[:80]!r}: @{{…}} goes right after a branch or tag name",
                part=part,
            )
        n = _number(part[1:], part)
        commit = (
            _ancestor(conn, dataset_id, commit, n)
            if part[0] == "~"
            else _parent(conn, dataset_id, commit, n, part)
        )
    return commit


def _ancestor(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, commit: str, n: int) -> str:
    rows, total = commits_service.history(conn, dataset_id, commit, offset=n, limit=1)
    if not rows:
        raise RevisionNotFound(
            f"~{n}: commit {commit[:12]} has {total - 1} first-parent ancestor(s)", part=f"~{n}"
        )
    return str(rows[0]["id"])


def _parent(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, commit: str, n: int, part: str
) -> str:
    if n == 0:
        return commit
    parents = commits_service.get(conn, dataset_id, commit)["parents"]
    if n > len(parents):
        raise RevisionNotFound(
            f"{part}: commit {commit[:12]} has {len(parents)} parent(s)", part=part
        )
    return str(parents[n - 1])


def _from_reflog(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, name: str, part: str) -> str:
    inner = part[2:-1]
    if inner.strip().isdigit():
        n = int(inner)
        row = conn.execute(Q.nth_value, {"dataset_id": dataset_id, "name": name, "n": n}).fetchone()
        if row is None:
            raise RevisionNotFound(
                f"{name}{part}: the reflog of {name!r} holds fewer than {n + 1} values", part=part
            )
    else:
        at = when(inner, part)
        row = conn.execute(
            Q.value_at, {"dataset_id": dataset_id, "name": name, "at": at}
        ).fetchone()
        if row is None or row["new_commit_id"] is None:
            raise RevisionNotFound(
                f"{name}{part}: {name!r} did not exist at {at.isoformat(timespec='seconds')} "
                "(or the reflog no longer goes back that far)",
                part=part,
            )
    return str(row["new_commit_id"])

"""Merges: fast-forward where possible, otherwise a three-way merge of every
table at the merge base; reverts are the same three-way merge.

A three-way merge of a table starts from *ours* (the target) and replays what
*theirs* (the source) changed since the base, row by row, as ``compare``
pairs rows (by primary key, or by position between matched rows):

- a row theirs removed is removed from ours (if ours still has it as it was);
- a row theirs modified replaces ours (if ours kept it); if ours modified it
  too, cells merge: each cell takes the side that changed it; a cell both
  sides changed differently is a conflict;
- a row theirs added is inserted after the row it followed in theirs (found
  in ours through the base), after any rows ours added there; a row both
  sides added identically at the same place (or, keyed, with the same key)
  is kept once; the same key added with other values is a conflict;
- modified on one side and removed on the other is a conflict.

Tables: one side's change wins where the other side left the table alone;
both sides changing the schema, or one the schema and the other the rows,
is a conflict (``schema``), as is a table deleted on one side and changed
on the other (``table``). ``strategy`` ours/theirs settles every conflict
for that side; ``fail`` (default) answers 409 listing them. Stored rows are
re-used: the merged manifest points at ours' and theirs' chunks, and only
cell-merged rows are written anew (``three_way``).

Like an import, a merge or revert reads the heads in a short transaction,
builds its objects outside any transaction, and lands through
``refs_service.land`` (record the commit, move the branch by compare-and-swap):
no transaction is held while rows are read. When another writer moved the
target in between, the merge is built again on the new head (up to
``LAND_ATTEMPTS`` times) unless the client named the head it expected.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg

from core import audit, db
from core.errors import Conflict
from core.holds import holding
from core.objects import Commit, commit_time, get_commit
from core.storage import get_store
from features.commits import service as commits_service
from features.merges.errors import InvalidStrategy, MergeConflict, RevertRoot
from features.merges.three_way import MAX_CONFLICTS_SHOWN, three_way
from features.quality import service as quality_service
from features.refs import service as refs_service
from features.refs.errors import RefConflict
from features.webhooks import service as webhooks_service

__all__ = ["MAX_CONFLICTS_SHOWN", "STRATEGIES", "merge", "revert", "three_way"]

STRATEGIES = ("fail", "ours", "theirs")
LAND_ATTEMPTS = 5


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise InvalidStrategy(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")


def _conflict(conflicts: list[dict[str, Any]], count: int, what: str) -> Conflict:
    return MergeConflict(
        f"{what} has {count} conflict{'s' if count != 1 else ''}; resolve them, or "
        "choose strategy ours or theirs",
        conflicts=conflicts,
        conflict_count=count,
    )


def _branch_head(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, branch: str, expected: str | None
) -> str:
    """The branch's commit, which must be ``expected`` when one is given."""
    head: str = refs_service.get_branch(conn, dataset_id, branch)["commit_id"]
    if expected is not None and refs_service.resolve(conn, dataset_id, expected) != head:
        raise RefConflict(
            f"branch {branch!r} is no longer at {expected[:12]}; it is at {head[:12]}",
            expected_commit_id=expected,
            actual_commit_id=head,
        )
    return head


def _until_landed(build: Callable[[], dict[str, Any]], expected: str | None) -> dict[str, Any]:
    """``build()`` (which lands), again while the branch moved before it could
    land (up to ``LAND_ATTEMPTS`` times), unless the client named the head it
    expected: then the ``RefConflict`` is the answer."""
    for attempt in range(LAND_ATTEMPTS):
        try:
            return build()
        except RefConflict:
            if expected is not None or attempt + 1 == LAND_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _primary_key(dataset: dict[str, Any]) -> list[str] | None:
    return list(dataset["primary_key"]) if dataset.get("primary_key") else None


def merge(
    dataset: dict[str, Any],
    *,
    source: str,
    target: str,
    by: str,
    message: str | None = None,
    expected_target: str | None = None,
    strategy: str = "fail",
) -> dict[str, Any]:
    """Merge ref ``source`` into branch ``target`` of an authorised ``dataset``.

    ``source`` is resolved once: a merge built again after losing a race
    merges the commit the request named, not where the ref went since."""
    _check_strategy(strategy)
    with db.transaction() as conn:  # the target's checks first, as the errors always came
        _branch_head(conn, dataset["id"], target, expected_target)
        src = refs_service.resolve(conn, dataset["id"], source)
    with holding("merge"):  # objects written before the commit that names them
        return _until_landed(
            lambda: _merge_once(
                dataset, source, src, target, by, message, expected_target, strategy
            ),
            expected_target,
        )


def _fast_forward(
    dataset_id: uuid.UUID, source: str, src: str, target: str, head: str, by: str
) -> dict[str, Any]:
    """Move ``target`` from ``head`` to ``src``, which descends from it (once
    the gate passed): the move, its webhooks' ``commit`` event, the audit entry."""
    commit = get_commit(get_store(), src)
    quality_service.require_gate(dataset_id, target, commit)
    with db.transaction() as conn:
        refs_service.cas_move(
            conn,
            dataset_id=dataset_id,
            name=target,
            new=src,
            expected=head,
            by=by,
            reason=f"merge {source} (fast-forward)",
        )
        webhooks_service.committed(
            conn, dataset_id, target, src, commit, "merge", by=by, previous=head
        )
        audit.record(
            conn,
            "merge",
            actor=by,
            dataset_id=dataset_id,
            target=target,
            details={"commit_id": src, "source": source, "fast_forward": True},
        )
    return {"commit_id": src, "fast_forward": True, "up_to_date": False}


def _merge_once(
    dataset: dict[str, Any],
    source: str,
    src: str,
    target: str,
    by: str,
    message: str | None,
    expected_target: str | None,
    strategy: str,
) -> dict[str, Any]:
    dataset_id: uuid.UUID = dataset["id"]
    with db.transaction() as conn:
        head = _branch_head(conn, dataset_id, target, expected_target)
        base = commits_service.merge_base(conn, dataset_id, head, src)
    if base == src:
        return {"commit_id": head, "fast_forward": False, "up_to_date": True}
    reason = f"merge {source}"
    if base == head:
        return _fast_forward(dataset_id, source, src, target, head, by)
    store = get_store()
    ours, theirs = get_commit(store, head), get_commit(store, src)
    base_c = get_commit(store, base) if base else Commit((), {}, "", "", "")
    tables, conflicts, count = three_way(
        store, base_c, ours, theirs, _primary_key(dataset), strategy
    )
    if count and strategy == "fail":
        raise _conflict(conflicts, count, f"merging {source} into {target}")
    commit = Commit(
        parents=(head, src),
        tables=tables,
        author=by,
        created_at=commit_time(datetime.now(UTC)),
        message=message or f"Merge {source} into {target}",
        provenance={
            "merge": {
                "source": source,
                "source_commit_id": src,
                "target": target,
                "base_commit_id": base,
                "strategy": strategy,
                "conflicts_resolved": count,
            }
        },
    )
    quality_service.require_gate(dataset_id, target, commit)
    commit_id = refs_service.land(
        dataset_id=dataset_id,
        branch=target,
        commit=commit,
        by=by,
        reason=reason,
        action="merge",
        details={"source": source, "source_commit_id": src},
    )
    return {
        "commit_id": commit_id,
        "fast_forward": False,
        "up_to_date": False,
        "merge_base": base,
        "conflicts_resolved": count,
    }


def revert(
    dataset: dict[str, Any],
    *,
    branch: str,
    commit: str,
    by: str,
    message: str | None = None,
    expected: str | None = None,
    strategy: str = "fail",
) -> dict[str, Any]:
    """A new commit on ``branch`` undoing what ``commit`` changed (against its
    first parent): a three-way merge of the parent into the branch, at the
    commit."""
    _check_strategy(strategy)
    with db.transaction() as conn:
        _branch_head(conn, dataset["id"], branch, expected)
        target = refs_service.resolve(conn, dataset["id"], commit)
    with holding("revert"):
        return _until_landed(
            lambda: _revert_once(dataset, branch, target, by, message, expected, strategy),
            expected,
        )


def _revert_once(
    dataset: dict[str, Any],
    branch: str,
    target: str,
    by: str,
    message: str | None,
    expected: str | None,
    strategy: str,
) -> dict[str, Any]:
    dataset_id: uuid.UUID = dataset["id"]
    with db.transaction() as conn:
        head = _branch_head(conn, dataset_id, branch, expected)
    store = get_store()
    undone = get_commit(store, target)
    if not undone.parents:
        raise RevertRoot("the dataset's first commit cannot be reverted")
    parent = get_commit(store, undone.parents[0])
    tables, conflicts, count = three_way(
        store, undone, get_commit(store, head), parent, _primary_key(dataset), strategy
    )
    if count and strategy == "fail":
        raise _conflict(conflicts, count, f"reverting {target[:12]}")
    new = Commit(
        parents=(head,),
        tables=tables,
        author=by,
        created_at=commit_time(datetime.now(UTC)),
        message=message or f'Revert "{undone.message}"',
        provenance={
            "revert": {"commit_id": target, "strategy": strategy, "conflicts_resolved": count}
        },
    )
    quality_service.require_gate(dataset_id, branch, new)
    commit_id = refs_service.land(
        dataset_id=dataset_id,
        branch=branch,
        commit=new,
        by=by,
        reason=f"revert {target[:12]}",
        action="revert",
        details={"reverted": target},
    )
    return {"commit_id": commit_id, "reverted": target, "conflicts_resolved": count}

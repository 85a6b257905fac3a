"""Commits: writing commit objects and their PostgreSQL mirror, history."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

import psycopg
import structlog
from psycopg.types.json import Jsonb

from core import db
from core.lru import LRU
from core.objects import Commit, commit_time, get_manifest, put_object
from core.storage import get_store
from features.commits import graph
from features.commits.errors import CommitNotFound

Q = db.Queries(__file__)
log = structlog.get_logger(__name__)
ROOT_MESSAGE = "Create dataset"


def create_root(
    conn: psycopg.Connection[Any], *, dataset_id: uuid.UUID, author: str, created_at: datetime
) -> str:
    commit = Commit(
        parents=(),
        tables={},
        author=author,
        created_at=commit_time(created_at),
        message=ROOT_MESSAGE,
        provenance={"dataset_id": str(dataset_id)},
    )
    return record(conn, dataset_id=dataset_id, commit=commit)


def record(conn: psycopg.Connection[Any], *, dataset_id: uuid.UUID, commit: Commit) -> str:
    """Store the commit object, then mirror it in PostgreSQL with its place in
    the graph (generation, chain, links). Returns its id; recording a commit
    that is already there changes nothing."""
    put_object(get_store(), "commit", commit)
    if _recorded(conn, dataset_id, commit.id):
        return commit.id
    db.after_commit(conn, lambda: account(dataset_id, commit))
    parents = list(commit.parents)
    found = {
        r["id"]: r
        for r in conn.execute(Q.points, {"dataset_id": dataset_id, "ids": parents}).fetchall()
    }
    for p in parents:
        if p not in found:
            raise CommitNotFound(f"parent commit {p} is unknown")
    row = {
        "dataset_id": dataset_id,
        "id": commit.id,
        "parents": parents,
        "author": commit.author,
        "message": commit.message,
        "created_at": commit.created_at,
        "tables": Jsonb({n: t.to_json() for n, t in commit.tables.items()}),
        "provenance": Jsonb(commit.provenance),
        "row_count": sum(t.row_count for t in commit.tables.values()),
        "table_count": len(commit.tables),
        "depth": found[parents[0]]["depth"] + 1 if parents else 0,
        "generation": 1 + max((found[p]["generation"] for p in parents), default=0),
    }
    first = found[parents[0]] if parents else None
    if first is not None and first["tip"]:
        # continue the first parent's chain, unless a concurrent commit just did
        try:
            with conn.transaction():
                inserted = conn.execute(
                    Q.insert_commit,
                    {**row, "chain": first["chain"], "chain_pos": first["chain_pos"] + 1},
                ).fetchone()
        except psycopg.errors.UniqueViolation:
            inserted = None
            if _recorded(conn, dataset_id, commit.id):
                return commit.id
        else:
            if inserted is None:  # recorded concurrently
                return commit.id
            _insert_links(
                conn, dataset_id, first["chain"], first["chain_pos"] + 1, parents[1:], 1, found
            )
            return commit.id
    chain = conn.execute(Q.new_chain).fetchone()["chain"]  # type: ignore[index]
    if conn.execute(Q.insert_commit, {**row, "chain": chain, "chain_pos": 0}).fetchone() is None:
        return commit.id
    _insert_links(conn, dataset_id, chain, 0, parents, 0, found)
    return commit.id


def _recorded(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, commit_id: str) -> bool:
    """Whether the commit is in the table as this transaction sees it. Not
    cached: this transaction may still roll back (``exists`` remembers)."""
    row = conn.execute(Q.depth_of, {"dataset_id": dataset_id, "id": commit_id}).fetchone()
    return row is not None


def _insert_links(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    chain: int,
    pos: int,
    parents: list[str],
    first_index: int,
    found: dict[str, dict[str, Any]],
) -> None:
    if not parents:
        return
    conn.execute(
        Q.insert_links,
        {
            "dataset_id": dataset_id,
            "chain": chain,
            "chain_pos": pos,
            "parent_index": list(range(first_index, first_index + len(parents))),
            "parent_chain": [found[p]["chain"] for p in parents],
            "parent_pos": [found[p]["chain_pos"] for p in parents],
            "parent_generation": [found[p]["generation"] for p in parents],
        },
    )


def get(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, commit_id: str) -> dict[str, Any]:
    """The commit's row (from the read replica when there is one, see ``core.db``)."""

    def one(c: psycopg.Connection[Any]) -> dict[str, Any]:
        row = c.execute(Q.get_commit, {"dataset_id": dataset_id, "id": commit_id}).fetchone()
        if row is None:
            raise CommitNotFound(f"commit {commit_id} does not exist")
        return row

    return db.read_immutable(conn, one)


_known: LRU[tuple[uuid.UUID, str], float] = LRU(max_items=100_000)
KNOWN_FOR_S = 300.0  # garbage collection may prune a commit unreachable for long


def exists(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, commit_id: str) -> bool:
    """Whether the dataset has this commit; remembered for ``KNOWN_FOR_S``
    (a commit goes only when garbage collection prunes it, unreachable for
    the reflog's retention window).

    Part of ref resolution, so read on the caller's connection (the primary),
    as is ``ids_by_prefix``: on a replica, an absent row cannot be told from
    one not replayed yet."""
    key = (dataset_id, commit_id)
    seen = _known.get(key)
    if seen is not None and time.monotonic() - seen < KNOWN_FOR_S:
        return True
    found = conn.execute(Q.depth_of, {"dataset_id": dataset_id, "id": commit_id}).fetchone()
    if found is not None:
        _known.put(key, time.monotonic())
    return found is not None


def ids_by_prefix(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, prefix: str) -> list[str]:
    rows = conn.execute(Q.by_prefix, {"dataset_id": dataset_id, "prefix": prefix}).fetchall()
    return [r["id"] for r in rows]


def _points(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, ids: list[str]
) -> dict[str, dict[str, Any]]:
    rows = conn.execute(Q.points, {"dataset_id": dataset_id, "ids": ids}).fetchall()
    found = {r["id"]: r for r in rows}
    for i in ids:
        if i not in found:
            raise CommitNotFound(f"commit {i} does not exist")
    return found


def _point(row: dict[str, Any]) -> graph.Point:
    return graph.Point(row["chain"], row["chain_pos"], row["generation"])


def _graph(conn: psycopg.Connection[Any], dataset_id: uuid.UUID) -> graph.Graph:
    return graph.Graph.from_rows(conn.execute(Q.links, {"dataset_id": dataset_id}))


# Reads of the graph may go to the read replica (``db.read_immutable``): when
# a commit's row is there, so are its ancestors' and every link between them,
# since a commit is recorded only after its parents and with its own links in
# one transaction, and the replica replays transactions in commit order. So a
# read that finds its starting commits answers exactly as the primary would,
# and one that does not raises CommitNotFound and runs again on the primary.


def history(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    head: str,
    *,
    offset: int,
    limit: int,
    all_parents: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """One page of history from ``head``, newest first, and the history's length.

    First-parent (default): the chain of first parents down to the root.
    ``all_parents``: every ancestor through all parents, in topological order
    (a commit before its parents: by generation, ties by time, then id)."""
    return db.read_immutable(
        conn,
        lambda c: _history(c, dataset_id, head, offset, limit, all_parents=all_parents),
    )


def _history(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    head: str,
    offset: int,
    limit: int,
    *,
    all_parents: bool,
) -> tuple[list[dict[str, Any]], int]:
    h = _points(conn, dataset_id, [head])[head]
    start = _point(h)
    if all_parents:
        return _graph_page(conn, dataset_id, start, offset=offset, limit=limit)
    total = h["depth"] + 1
    max_depth = h["depth"] - offset
    min_depth = max(0, max_depth - limit + 1)
    if max_depth < 0 or limit == 0:
        return [], total
    if start.pos >= h["depth"] - min_depth:  # the page lies in head's own chain
        segments = [(start.chain, start.pos - (h["depth"] - min_depth), start.pos - offset)]
    else:
        segments = graph.first_parent_segments(
            _graph(conn, dataset_id), start, h["depth"], min_depth=min_depth, max_depth=max_depth
        )
    rows = conn.execute(
        Q.first_parent_page,
        {
            "dataset_id": dataset_id,
            "chains": [s[0] for s in segments],
            "lo": [s[1] for s in segments],
            "hi": [s[2] for s in segments],
        },
    ).fetchall()
    return rows, total


def _graph_page(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    start: graph.Point,
    *,
    offset: int,
    limit: int,
) -> tuple[list[dict[str, Any]], int]:
    reach = _graph(conn, dataset_id).reach(start)
    total = graph.count(reach)
    if offset >= total or limit == 0:
        return [], total
    points = list(reach.values())
    params: dict[str, Any] = {
        "dataset_id": dataset_id,
        "chains": [p.chain for p in points],
        "top": [p.generation for p in points],
    }
    # Every generation from 1 to the head's G holds an ancestor. So at least k
    # ancestors have a generation above G - k, and they come first: the first
    # n = offset + limit lie at or above G - n + 1. Likewise the m oldest lie
    # at or below generation m. Read from whichever end is nearer.
    end = min(offset + limit, total)
    from_root = total - offset  # the page's distance from the oldest end
    if end <= from_root:
        rows = conn.execute(
            Q.graph_page,
            {**params, "floor": start.generation - end + 1, "offset": offset, "limit": limit},
        ).fetchall()
    else:
        rows = conn.execute(
            Q.graph_page_from_root,
            {
                **params,
                "ceiling": from_root,
                "offset": total - end,
                "limit": end - offset,
            },
        ).fetchall()
        rows.reverse()
    return rows, total


def every(conn: psycopg.Connection[Any], dataset_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every commit row of the dataset (id, parents, tables, row_count),
    parents before children: what a check of the stored data walks."""
    return conn.execute(Q.every_commit, {"dataset_id": dataset_id}).fetchall()


def merge_base(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, a: str, b: str) -> str | None:
    """The best common ancestor of commits ``a`` and ``b`` (ids), or None if
    they share no history.

    A best common ancestor is one that no other common ancestor descends
    from. When there are several (criss-cross merges), the one with the
    highest generation is chosen, then the newest, then the smallest id: the
    same answer every time, for either order of ``a`` and ``b``."""
    return db.read_immutable(conn, lambda c: _merge_base(c, dataset_id, a, b))


def _merge_base(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, a: str, b: str) -> str | None:
    if a == b:
        _points(conn, dataset_id, [a])
        return a
    found = _points(conn, dataset_id, [a, b])
    g = _graph(conn, dataset_id)
    tips = graph.common_tips(g.reach(_point(found[a])), g.reach(_point(found[b])))
    if not tips:
        return None
    top = max(p.generation for p in tips)
    best = [p for p in tips if p.generation == top]
    row = conn.execute(
        Q.at_points,
        {
            "dataset_id": dataset_id,
            "chains": [p.chain for p in best],
            "pos": [p.pos for p in best],
        },
    ).fetchone()
    assert row is not None
    return str(row["id"])


def is_ancestor(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, a: str, b: str) -> bool:
    """Whether commit ``a`` is ``b`` or one of its ancestors (ids)."""
    return db.read_immutable(conn, lambda c: _is_ancestor(c, dataset_id, a, b))


def _is_ancestor(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, a: str, b: str) -> bool:
    found = _points(conn, dataset_id, [a, b])
    pa, pb = _point(found[a]), _point(found[b])
    if pa.generation > pb.generation:
        return False
    if pa.chain == pb.chain:
        return pa.pos <= pb.pos
    got = _graph(conn, dataset_id).reach(pb).get(pa.chain)
    return got is not None and got.pos >= pa.pos


def prune(conn: psycopg.Connection[Any], dataset_id: uuid.UUID, ids: list[str]) -> int:
    """Delete commits no ref, reflog entry or commit reaches any more (garbage
    collection); how many went. A ref moved onto one meanwhile makes it fail
    (a foreign key): nothing is deleted then."""
    if not ids:
        return 0
    n = conn.execute(Q.prune, {"dataset_id": dataset_id, "ids": ids}).rowcount
    for cid in ids:
        _known.pop((dataset_id, cid))
    return n


# --------------------------------------------------------------------------- storage accounting


def commit_objects(commit: Commit, commit_id: str) -> list[str]:
    """The keys of the objects a commit references: itself, its tables'
    schemas and manifests, and the chunks the manifests name."""
    store = get_store()
    keys = [f"commits/{commit_id}"]
    for entry in commit.tables.values():
        keys += [f"schemas/{entry.schema}", f"manifests/{entry.manifest}"]
        keys += [f"chunks/{c}" for c in get_manifest(store, entry.manifest).columns.chunks]
    return keys


def account(dataset_id: uuid.UUID, commit: Commit) -> None:
    """Add what a new commit references to its dataset's storage accounting
    (after it landed; best effort: gc makes the figures exact)."""
    try:
        keys = commit_objects(commit, commit.id)
        with db.read() as conn:
            have = {
                r["key"]
                for r in conn.execute(Q.recorded_objects, {"dataset_id": dataset_id, "keys": keys})
            }
            new = [k for k in dict.fromkeys(keys) if k not in have]
            stats = [(k, st.size) for k in new if (st := get_store().stat(k)) is not None]
            if stats:
                conn.execute(
                    Q.add_objects,
                    {
                        "dataset_id": dataset_id,
                        "keys": [k for k, _ in stats],
                        "bytes": [b for _, b in stats],
                    },
                )
    except Exception:  # never fails what landed
        log.warning("storage accounting failed", dataset_id=str(dataset_id), exc_info=True)


def set_objects(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, sizes: dict[str, int], before: Any
) -> None:
    """gc's exact accounting: the dataset references exactly these objects
    (and whatever commits that landed since ``before`` added)."""
    conn.execute(
        Q.drop_objects_but, {"dataset_id": dataset_id, "keys": list(sizes), "before": before}
    )
    if sizes:
        conn.execute(
            Q.add_objects,
            {"dataset_id": dataset_id, "keys": list(sizes), "bytes": list(sizes.values())},
        )


def storage(conn: psycopg.Connection[Any], dataset_id: uuid.UUID) -> dict[str, int]:
    """``{bytes, unique_bytes}``: what the dataset's commits reference, and
    what of it no other dataset does."""
    row = conn.execute(Q.storage, {"dataset_id": dataset_id}).fetchone()
    return (
        {"bytes": int(row["bytes"]), "unique_bytes": int(row["unique_bytes"])}
        if row
        else {
            "bytes": 0,
            "unique_bytes": 0,
        }
    )

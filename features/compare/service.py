"""Compare two versions of a dataset: schema diff, summary, changes in head order.

How rows are matched and paired is in ``align`` (and docs/compare.md). A
diff of two commits never changes, so the aligned change list (positions
only, no row data) is cached per (base, head, table, key); pages of it read
just the rows they show.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
import pyarrow as pa
import structlog

from core import db, deadline
from core.chunks import chunk_key
from core.config import get_settings
from core.errors import StoredObjectError
from core.layouts import Copy
from core.lru import LRU
from core.objects import Commit, Manifest, Schema, TableEntry, get_commit, get_manifest, get_schema
from core.storage import ObjectStore, get_store
from features.compare import align as alignment
from features.compare import schema_diff
from features.compare.rows import POOL, Projected, TableRows
from features.data import service as data_service
from features.data.errors import TableNotFound, TableRequired
from features.layouts import service as layouts_service
from features.refs import service as refs_service
from features.stats import service as stats_service

log = structlog.get_logger(__name__)
FIRST_PAGE = 100  # the page a summary's client reads next (the routes' default limit)
MAX_LIMIT = 1000
Q = db.Queries(__file__)
REMOVE, ADD, MODIFY = 0, 1, 2
_OPS = {REMOVE: "remove", ADD: "add", MODIFY: "modify"}
_EMPTY = Schema(())


@dataclass
class TableVersion:
    entry: TableEntry | None
    schema: Schema
    manifest: Manifest
    rows: TableRows
    copy: Copy | None = None  # the read copy its rows are read from, if any


def version(store: ObjectStore, commit: Commit, table: str) -> TableVersion:
    entry = commit.tables.get(table)
    schema = get_schema(store, entry.schema) if entry else _EMPTY
    manifest = get_manifest(store, entry.manifest) if entry else Manifest(())
    return TableVersion(entry, schema, manifest, TableRows(store, manifest, schema))


def versions(
    store: ObjectStore, base: Commit, head: Commit, table: str
) -> tuple[TableVersion, TableVersion]:
    """Both sides of a compare, their manifests decoded at once: the decoder
    releases the GIL, and a manifest of ~270,000 pieces (the bench table
    after ten re-uploads) takes ~10 ms to decode cold, most of it the first
    touch of fresh memory (two at once: ~12 ms, against ~20)."""
    b, h = deadline.map_on(POOL, lambda c: version(store, c, table), [base, head])
    return b, h


@dataclass
class TableDiff:
    """Everything about one table's change except row values."""

    schema: schema_diff.SchemaDiff
    key: list[str] | None  # the primary key rows were paired by, head names
    matched: int
    op: np.ndarray  # change kinds in head order
    base_pos: np.ndarray  # -1 where none
    head_pos: np.ndarray
    seg: np.ndarray  # matched runs (base_pos, head_pos, length), in head order

    def summary(self) -> dict[str, int]:
        counts = np.bincount(self.op, minlength=3) if len(self.op) else np.zeros(3, np.int64)
        return {
            "added": int(counts[ADD]),
            "removed": int(counts[REMOVE]),
            "modified": int(counts[MODIFY]),
            "unchanged": self.matched,
        }


# by dataset too: a diff may rest on what the dataset's imports recorded (decision 0041)
_diffs: LRU[tuple[uuid.UUID, str, str, str, tuple[str, ...] | None], TableDiff] = LRU(max_items=32)


def same_columns(a: Schema, b: Schema) -> bool:
    """Whether rows of the two schemas hash alike (names and types; not nullability)."""
    return [(c.name, c.type) for c in a.columns] == [(c.name, c.type) for c in b.columns]


def _schema_diff(base: TableVersion, head: TableVersion) -> schema_diff.SchemaDiff:
    def same_data(b: str, h: str) -> bool:
        n = base.manifest.row_count
        if n != head.manifest.row_count or base.entry is None or head.entry is None:
            return False
        everything = np.arange(n, dtype=np.int64)
        return (
            base.rows.read(everything, [b])
            .column(0)
            .equals(head.rows.read(everything, [h]).column(0))
        )

    return schema_diff.diff(
        base.schema if base.entry else None, head.schema if head.entry else None, same_data
    )


def projection(
    sd: schema_diff.SchemaDiff, base: Schema, head: Schema
) -> tuple[list[Projected], list[Projected]]:
    """The shared columns as each side reads them, in head order; a column
    whose type changed is compared as text."""
    btype = {c.name: c.type for c in base.columns}
    htype = {c.name: c.type for c in head.columns}
    to_base = {h: b for b, h in sd.shared.items()}
    bcols, hcols = [], []
    for c in head.columns:
        if c.name not in to_base:
            continue
        b = to_base[c.name]
        kind = c.type if btype[b] == htype[c.name] else "string"
        bcols.append(Projected(b, c.name, kind))
        hcols.append(Projected(c.name, c.name, kind))
    return bcols, hcols


def remember_disjoint(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, base_manifest: str, head_manifest: str
) -> None:
    """Record that the rows of two versions of the dataset that are not the
    same stored row on both sides share no row hash (an import that matched
    ``head`` against ``base`` exhaustively knows it; decision 0041): their
    compare then skips matching by hash, which reads the hashes of every row
    group an edit touched (rule 2 of ``align``). Kept per dataset: what one
    dataset's import says is not taken for another's versions."""
    conn.execute(
        Q.remember_disjoint,
        {"dataset_id": dataset_id, "base": base_manifest, "head": head_manifest},
    )


def _disjoint(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, base: TableVersion, head: TableVersion
) -> bool:
    if base.entry is None or head.entry is None:
        return False
    row = conn.execute(
        Q.disjoint,
        {"dataset_id": dataset_id, "a": base.entry.manifest, "b": head.entry.manifest},
    ).fetchone()
    return bool(row and row["known"])


def diff_table(
    base: TableVersion,
    head: TableVersion,
    primary_key: list[str] | None,
    *,
    disjoint: bool = False,
) -> TableDiff:
    """Rules 1-4 of ``align`` for one table (no caching); ``disjoint``: the
    rows the sides do not share as stored rows are known to share no row
    hash (``remember_disjoint``), so rule 2 finds nothing and is skipped."""
    deadline.check()
    sd = _schema_diff(base, head)
    bproj, hproj = projection(sd, base.schema, head.schema)
    key = None
    if primary_key and all(k in {p.name for p in hproj} for k in primary_key):
        key = list(primary_key)
    if base.entry and head.entry and same_columns(base.schema, head.schema):
        al = alignment.align(
            base.manifest,
            head.manifest,
            base.rows.stored_hashes,
            head.rows.stored_hashes,
            by_hash=not disjoint,
        )
    elif hproj:
        al = alignment.align(
            base.manifest,
            head.manifest,
            lambda p: base.rows.projected_hashes(p, bproj),
            lambda p: head.rows.projected_hashes(p, hproj),
        )
    else:  # nothing in common: every row removed and every row added
        al = alignment.Alignment(base.manifest.row_count, head.manifest.row_count, _no_segments())
    deadline.check()
    ub, uh = al.unmatched_base(), al.unmatched_head()
    if not hproj:
        mb = mh = np.empty(0, np.int64)
    elif key is not None:
        bkey = [p for p in bproj if p.name in key]
        hkey = [p for p in hproj if p.name in key]
        mb, mh = alignment.match_by_hash(
            ub, base.rows.projected_hashes(ub, bkey), uh, head.rows.projected_hashes(uh, hkey)
        )
    else:
        mb, mh = al.positional_pairs()
    adds = np.setdiff1d(uh, mh, assume_unique=True)
    rems = np.setdiff1d(ub, mb, assume_unique=True)
    anchors = al.removal_anchor(rems) if len(rems) else rems
    # sort key: (head position, removals first, base position)
    first = np.concatenate([anchors, adds, mh])
    second = np.concatenate([np.zeros(len(rems)), np.ones(len(adds) + len(mh))])
    third = np.concatenate([rems, adds, mh])
    order = np.lexsort((third, second, first))
    op = np.concatenate(
        [np.full(len(rems), REMOVE), np.full(len(adds), ADD), np.full(len(mh), MODIFY)]
    ).astype(np.int64)
    base_pos = np.concatenate([rems, np.full(len(adds), -1), mb]).astype(np.int64)
    head_pos = np.concatenate([np.full(len(rems), -1), adds, mh]).astype(np.int64)
    return TableDiff(sd, key, al.matched, op[order], base_pos[order], head_pos[order], al.seg)


def _no_segments() -> np.ndarray:
    return np.empty((0, 3), np.int64)


def table_status(base: Commit, head: Commit) -> list[dict[str, str]]:
    out = []
    for name in sorted(set(base.tables) | set(head.tables)):
        b, h = base.tables.get(name), head.tables.get(name)
        status = (
            "added"
            if b is None
            else "removed"
            if h is None
            else "unchanged"
            if b == h
            else "modified"
        )
        out.append({"name": name, "status": status})
    return out


def pick_table(base: Commit, head: Commit, table: str | None) -> str:
    names = sorted(set(base.tables) | set(head.tables))
    if table is not None:
        if table not in names:
            raise TableNotFound(f"table {table!r} is in neither version")
        return table
    if len(names) == 1:
        return names[0]
    raise TableRequired(
        "name the table with ?table= (the versions have tables: "
        + (", ".join(names) or "none")
        + ")",
        tables=names,
    )


def compare(
    conn: psycopg.Connection[Any],
    dataset: dict[str, Any],
    spec: str,
    *,
    table: str | None,
    offset: int,
    limit: int,
    stats: bool = False,
) -> dict[str, Any]:
    """Two versions of a table compared: schema diff, summary, a page of
    changes and, with ``stats``, how each column's statistics moved."""
    dataset_id: uuid.UUID = dataset["id"]
    base_ref, head_ref = refs_service.resolve_range(conn, dataset_id, spec)
    store = get_store()
    base_c, head_c = get_commit(store, base_ref), get_commit(store, head_ref)
    name = pick_table(base_c, head_c, table)
    base, head = versions(store, base_c, head_c, name)
    pk = list(dataset["primary_key"]) if dataset.get("primary_key") else None
    cache_key = (dataset_id, base_ref, head_ref, name, tuple(pk) if pk else None)
    td = _diffs.get(cache_key)
    if td is None:
        td = diff_table(base, head, pk, disjoint=_disjoint(conn, dataset_id, base, head))
        _diffs.put(cache_key, td)
    total = len(td.op)
    # a summary (limit=0) readies the read copies its first page will use:
    # the page a client asks for next finds them checked and remembered
    window = limit or FIRST_PAGE
    bpos, hpos = td.base_pos[offset : offset + window], td.head_pos[offset : offset + window]
    _read_from_copies(conn, store, (base, bpos[bpos >= 0]), (head, hpos[hpos >= 0]))
    changes = _changes(base, head, td, offset, limit)
    body = {
        "base_commit_id": base_ref,
        "head_commit_id": head_ref,
        "table": name,
        "tables": table_status(base_c, head_c),
        "key": td.key,
        "schema_diff": td.schema.to_json(),
        "summary": td.summary(),
        "changes": changes,
        "offset": offset,
        "limit": limit,
        "total_changes": total,
    }
    if stats:
        body["stats_diff"] = stats_service.diff(
            _stats_of(conn, store, base_c, name), _stats_of(conn, store, head_c, name)
        )
    return body


def _stats_of(
    conn: psycopg.Connection[Any], store: ObjectStore, commit: Commit, table: str
) -> dict[str, Any] | None:
    entry = commit.tables.get(table)
    return stats_service.of_version(conn, store, entry) if entry is not None else None


def _read_from_copies(
    conn: psycopg.Connection[Any], store: ObjectStore, *sides: tuple[TableVersion, np.ndarray]
) -> None:
    """Read the rows a page shows from a side's read copy where that decodes
    fewer row groups than its chunks (pages do not ask for copies:
    ``layouts``). A page of changes of a re-uploaded version finds its base
    rows in many chunks, a row group to decode in each (ten for a page of v9
    of the 1M-row benchmark table, against three in its copy); its head rows
    (the ones the upload changed) lie together in the upload's own chunk,
    fewer than in a copy. Matching rows still goes by the manifest's chunks."""
    rows_per_group = get_settings().row_group_rows
    for side, positions in sides:
        if side.entry is None or len(positions) == 0 or not layouts_service.applies(side.manifest):
            continue
        in_order = len(np.unique(positions // rows_per_group))  # about what a copy decodes
        if side.rows.groups_to_read(positions) <= in_order:
            continue
        copy = layouts_service.for_rows(conn, store, side.manifest, positions)
        if copy is not None:
            side.rows.read_from(*copy.source())
            side.copy = copy


def _changes(
    base: TableVersion, head: TableVersion, td: TableDiff, offset: int, limit: int
) -> list[dict[str, Any]]:
    sl = slice(offset, offset + limit)
    op, bpos, hpos = td.op[sl], td.base_pos[sl], td.head_pos[sl]
    if len(op) == 0:
        return []
    brows = _json_rows(base, bpos[bpos >= 0])
    hrows = _json_rows(head, hpos[hpos >= 0])
    to_head = td.schema.shared
    out: list[dict[str, Any]] = []
    bi = hi = 0
    for kind, b, h in zip(op.tolist(), bpos.tolist(), hpos.tolist(), strict=True):
        change: dict[str, Any] = {"op": _OPS[kind]}
        brow = hrow = None
        if b >= 0:
            change["base_position"] = b
            brow = brows[bi]
            bi += 1
        if h >= 0:
            change["head_position"] = h
            hrow = hrows[hi]
            hi += 1
        row = hrow if hrow is not None else brow
        assert row is not None
        if td.key:
            if hrow is not None:
                change["key"] = {k: hrow[k] for k in td.key}
            else:
                to_base = {v: k for k, v in to_head.items()}
                change["key"] = {k: row[to_base[k]] for k in td.key}
        if kind == MODIFY:
            assert brow is not None and hrow is not None
            change["cells"] = {
                hn: {"from": brow[bn], "to": hrow[hn]}
                for bn, hn in to_head.items()
                if brow[bn] != hrow[hn]
            }
        change["row"] = row
        out.append(change)
    return out


def _json_rows(side: TableVersion, positions: np.ndarray) -> list[dict[str, Any]]:
    if len(positions) == 0:
        return []
    names = side.schema.names
    try:
        table = side.rows.read(positions, names)
    except (StoredObjectError, OSError, pa.ArrowException):
        if side.copy is None:
            raise
        # a part of the read copy went missing or bad after it was checked:
        # it is checked again (and dropped) by the next read; this one
        # reads the version's own chunks
        log.warning("a read copy failed a page; read from the chunks", manifest=side.manifest.id)
        layouts_service.distrust(side.copy)
        side.copy = None
        side.rows.read_from(side.manifest, chunk_key)
        table = side.rows.read(positions, names)
    cols = [
        data_service.column_values(table.column(i), c.type)
        for i, c in enumerate(side.schema.columns)
    ]
    return [dict(zip(names, vals, strict=True)) for vals in zip(*cols, strict=True)]

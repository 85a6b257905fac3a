"""Filtered and sorted pages: which table positions a query selects, and in
what order.

A query (filter and/or sort over one table version) is answered in two steps:

1. **Positions.** The filter runs once over the rows of every distinct
   chunk of the manifest, on only the columns the filter and sort name
   (decoded by lazy polars scans with projection pushdown, all chunks in
   parallel, and cached, see below), giving one pass/fail flag per stored
   row. A piece ``(chunk, start, length)`` shows the stored rows
   ``[start, start + length)`` of its chunk at its table positions, so the
   matching **table positions** in table order are, piece by piece, its
   passing rows: exactly what filtering the table's rows in order gives (a
   chunk row no piece uses is never listed, one used by several pieces is
   listed once per use). An unsorted filter keeps them as ``Matches``: the
   flags and each piece's count of passing rows (one cumulative sum over
   the flags), not the list; ``len()`` is the count the page shows, and a
   page of them is found by binary search over the pieces' counts and
   listed from only the pieces it covers. A 1M-row table's query costs
   ~1 MB instead of 8 bytes a match, and no 1M-long index is built on the
   first page (figures in docs/benchmarks.md, "Reads"). A sort gathers its
   columns at the matching positions and orders them stably, so rows with
   equal sort keys stay in table order: the tie-break is the table position
   and pages never overlap or skip a row.
2. **Rows.** A page is a slice of those positions; its rows are read with
   ``core.chunks.read_rows`` run by run (only the row groups holding them,
   through the decoded row-group cache, ``DSA_PAGE_CACHE_BYTES``) and put
   back in page order. A page whose rows are scattered over many row groups
   decodes each of them once (~1 ms each for 2,048 rows × 12 columns); the
   cache makes the next read of the same rows cheap.

Two LRUs share one byte budget (``DSA_QUERY_CACHE_BYTES``): a quarter for
the positions, per (manifest, schema, filter text, sort text), as
``Matches`` or, sorted, int64 numpy arrays (the next page of the same query
costs a slice and a few row-group reads); the rest for the decoded filter and sort columns, per
(chunk, column), so a new filter on columns already read runs in memory
(~5 ms instead of a ~50 ms scan per 1M-row column). When a query's columns
would take more than a third of the budget they are not kept: each chunk
is then scanned lazily with projection and predicate pushdown (row groups
whose statistics exclude the filter are skipped) and the matching rows are
mapped onto the pieces by binary search. Chunks and manifests
never change, so entries never go stale; they only age out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TypeAlias

import numpy as np
import polars as pl
import pyarrow as pa

from core import deadline
from core.chunks import chunk_key, read_rows
from core.config import get_settings
from core.lru import LRU
from core.objects import Manifest, Schema
from core.storage import ObjectStore
from features.data import zones
from features.data.dtypes import polars_type

_positions: LRU[tuple[str, str, str, str], Positions] = LRU(
    max_items=4096, max_bytes=64 * 1024**2, size_of=lambda a: a.nbytes
)


def positions(
    store: ObjectStore,
    manifest: Manifest,
    schema: Schema,
    *,
    where: pl.Expr | None,
    order: list[tuple[str, bool]],
    key: tuple[str, str],
    object_key: Callable[[str], str] = chunk_key,
    zone: pl.Expr | None = None,
) -> Positions:
    """Table positions of the rows passing ``where``, in ``order`` (table
    order for ties and when unsorted); cached under ``key`` (the filter and
    sort texts) with the manifest and schema ids. ``len()`` is their count
    and a slice gives a page of them as int64. ``object_key``: where the
    manifest's chunks are read from (a read copy's parts: ``core.layouts``);
    ``zone``: the filter's test of chunks' extremes (``filters.parse_filter_zones``),
    which lets a scan skip chunks that cannot match."""
    cache_key = (manifest.id, schema.id, *key)
    got = _positions.get(cache_key)
    if got is None:
        got = _compute(store, manifest, schema, where, order, object_key, zone)
        got.setflags(write=False)
        _positions.max_bytes = get_settings().query_cache_bytes // 4
        _positions.put(cache_key, got)
    return got


_columns: LRU[tuple[str, str], pl.Series] = LRU(
    max_items=65_536, max_bytes=64 * 1024**2, size_of=lambda s: int(s.estimated_size())
)


def _fresh_name(base: str, taken: set[str]) -> str:
    while base in taken:
        base = "_" + base
    return base


def _compute(
    store: ObjectStore,
    manifest: Manifest,
    schema: Schema,
    where: pl.Expr | None,
    order: list[tuple[str, bool]],
    object_key: Callable[[str], str],
    zone: pl.Expr | None = None,
) -> Positions:
    cols = manifest.columns
    if len(cols.chunk) == 0:
        return np.zeros(0, dtype=np.int64)
    types = {c.name: c.type for c in schema.columns}
    needed: list[str] = []
    for name in [*(where.meta.root_names() if where is not None else []), *(n for n, _ in order)]:
        if name not in needed:
            needed.append(name)
    budget = get_settings().query_cache_bytes
    # decoded columns are kept (and reused by the next query on them) unless
    # they would crowd the cache: ~16 bytes a value is a generous estimate
    if not needed or manifest.row_count * 16 * len(needed) > budget // 3:
        return _compute_scanning(store, manifest, types, needed, where, order, object_key, zone)

    frames = _decoded(store, cols.chunks, needed, types, object_key)
    sizes = np.fromiter((f.height for f in frames), np.int64, len(frames))
    first = np.cumsum(sizes) - sizes  # each chunk's first row in ``stored``
    # every chunk's rows one after the other (no copy); a piece's rows are
    # ``stored[lo:lo + length]``
    stored = pl.concat(frames, how="vertical", rechunk=False)
    lo, length, table_pos = _piece_rows(manifest, first)
    passed = None
    if where is not None:
        passed = stored.select(where.fill_null(False)).to_series().to_numpy()  # per stored row
        if not order:
            return Matches(passed, lo, length, table_pos)
    deadline.check()
    at = _ranges(lo, length)  # the stored row at each table position
    pos = np.arange(len(at), dtype=np.int64) if passed is None else np.flatnonzero(passed[at])
    if len(pos) == 0:
        return pos.astype(np.int64, copy=False)
    sort_names = [n for n, _ in order]
    pos_col = _fresh_name("__pos", set(types))
    ranked = (
        stored.select(sort_names)[at[pos]]
        .with_columns(pl.Series(pos_col, pos))
        .sort(
            sort_names,
            descending=[d for _, d in order],
            nulls_last=True,
            maintain_order=True,  # stable: ties keep table order
        )
    )
    return ranked.get_column(pos_col).to_numpy().astype(np.int64, copy=False)


_pieces: LRU[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = LRU(
    max_items=256, max_bytes=64 * 1024**2, size_of=lambda t: sum(a.nbytes for a in t)
)


def _piece_rows(manifest: Manifest, first: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each non-empty piece: where its rows start among all the chunks'
    rows one after the other (``first``: each chunk's first row there), its
    length and its first table position. The same for every query of the
    manifest, so kept: a fragmented version's 300,000 pieces cost ~2 ms a
    query otherwise."""
    got = _pieces.get(manifest.id)
    if got is None:
        cols = manifest.columns
        keep = cols.length > 0
        got = (
            (first[cols.chunk] + cols.start)[keep].astype(np.int64),
            cols.length[keep].astype(np.int64),
            cols.pos[keep].astype(np.int64),
        )
        for a in got:
            a.setflags(write=False)
        _pieces.put(manifest.id, got)
    return got


class Matches:
    """The table positions passing a filter, in table order, without listing
    them all: one flag per stored row (``passed``) and, per piece of the
    manifest, where its rows are in ``passed`` (``lo``, ``length``), its
    first table position and how many of its rows passed before it
    (``before``). ``len()`` is the count; a slice finds the pieces holding
    it by binary search and lists only their passing rows, so a page costs
    in proportion to the page, and a query over 1M rows keeps ~1 byte a
    row instead of 8 per match."""

    def __init__(
        self, passed: np.ndarray, lo: np.ndarray, length: np.ndarray, pos: np.ndarray
    ) -> None:
        self.passed, self.lo, self.length, self.pos = passed, lo, length, pos
        # rows passed before each stored row, then per piece
        upto = np.empty(len(passed) + 1, dtype=np.int32 if len(passed) < 2**31 else np.int64)
        upto[0] = 0
        np.cumsum(passed, out=upto[1:])
        self.before = np.zeros(len(lo) + 1, dtype=np.int64)
        np.cumsum(upto[lo + length] - upto[lo], out=self.before[1:])

    def __len__(self) -> int:
        return int(self.before[-1])

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.passed, self.lo, self.length, self.pos, self.before))

    def setflags(self, *, write: bool) -> None:
        for a in (self.passed, self.lo, self.length, self.pos, self.before):
            a.setflags(write=write)

    def __getitem__(self, key: slice) -> np.ndarray:
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise ValueError("only contiguous slices of matches")
        if stop <= start:
            return np.zeros(0, dtype=np.int64)
        before = self.before
        p0 = int(np.searchsorted(before, start, side="right")) - 1  # holds match `start`
        p1 = int(np.searchsorted(before, stop, side="left"))  # pieces < p1 hold the rest
        hits = p0 + np.flatnonzero(before[p0 + 1 : p1 + 1] > before[p0:p1])
        parts = [
            np.flatnonzero(self.passed[self.lo[p] : self.lo[p] + self.length[p]]) + self.pos[p]
            for p in hits.tolist()
        ]
        skip = start - int(before[p0])
        return np.concatenate(parts)[skip : skip + stop - start]

    def to_numpy(self) -> np.ndarray:
        return self[:]


# what ``positions`` gives: a plain array when sorted, else the lazy matches
Positions: TypeAlias = np.ndarray | Matches


def _decoded(
    store: ObjectStore,
    chunks: list[str],
    needed: list[str],
    types: dict[str, str],
    object_key: Callable[[str], str],
) -> list[pl.DataFrame]:
    """The ``needed`` columns of each chunk, typed, from the cache or decoded
    (one lazy scan per chunk with projection pushdown, all run in parallel
    by polars) and cached."""
    got: dict[tuple[str, str], pl.Series] = {}
    missing: dict[str, list[str]] = {}
    for c in chunks:
        for n in needed:
            s = _columns.get((c, n))
            if s is None:
                missing.setdefault(c, []).append(n)
            else:
                got[(c, n)] = s
    if missing:
        budget = get_settings().query_cache_bytes
        _columns.max_bytes = budget - budget // 4
        with contextlib.ExitStack() as files:
            scans = [
                pl.scan_parquet(files.enter_context(store.local_path(object_key(c)))).select(
                    pl.col(n).cast(polars_type(types[n])) for n in ns
                )
                for c, ns in missing.items()
            ]
            for (c, ns), frame in zip(missing.items(), deadline.collect_all(scans), strict=True):
                for n in ns:
                    got[(c, n)] = frame.get_column(n)
                    _columns.put((c, n), got[(c, n)])
    return [pl.DataFrame([got[(c, n)] for n in needed]) for c in chunks]


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for each (s, n), vectorised."""
    lengths = lengths.astype(np.int64, copy=False)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts.astype(np.int64) - before, lengths) + np.arange(total, dtype=np.int64)


def _compute_scanning(
    store: ObjectStore,
    manifest: Manifest,
    types: dict[str, str],
    needed: list[str],
    where: pl.Expr | None,
    order: list[tuple[str, bool]],
    object_key: Callable[[str], str],
    zone: pl.Expr | None = None,
) -> np.ndarray:
    """``_compute`` for queries whose columns are too big to keep: each chunk
    whose extremes do not rule the filter out (``zones.may_match``) is
    scanned with projection and predicate pushdown (row groups whose
    statistics exclude the filter are skipped), and the matches are mapped
    onto the manifest's pieces."""
    cols = manifest.columns
    names = set(types)
    row_col = _fresh_name("__row", names)
    chunk_col = _fresh_name("__chunk", names)
    sort_names = [n for n, _ in order]
    frames = []
    keep = zones.may_match(store, cols.chunks, zone, types, object_key)
    with contextlib.ExitStack() as files:
        for k, cid in enumerate(cols.chunks):
            if not keep[k]:
                continue
            path = files.enter_context(store.local_path(object_key(cid)))
            lf = pl.scan_parquet(path, row_index_name=row_col).select(
                pl.col(row_col),
                *(pl.col(n).cast(polars_type(types[n])) for n in needed),
            )
            if where is not None:
                lf = lf.filter(where)
            frames.append(
                lf.select(
                    pl.lit(k, dtype=pl.Int64).alias(chunk_col),
                    pl.col(row_col).cast(pl.Int64),
                    *sort_names,
                )
            )
        if not frames:  # no chunk can hold a match
            return np.zeros(0, dtype=np.int64)
        found = deadline.collect(pl.concat(frames, how="vertical"))

    # matches as sorted keys chunk << 32 | row (each scan keeps its file's order)
    chunk_of = found.get_column(chunk_col).to_numpy()
    row_of = found.get_column(row_col).to_numpy()
    keys = (chunk_of << 32) | row_of
    if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):  # never seen; be safe
        keep = np.argsort(keys, kind="stable")
        keys, row_of, found = keys[keep], row_of[keep], found[keep]
    # each piece's matches: the keys in [chunk << 32 | start, chunk << 32 | end)
    base = cols.chunk.astype(np.int64) << 32
    lo = np.searchsorted(keys, base | cols.start, side="left")
    hi = np.searchsorted(keys, base | (cols.start + cols.length), side="left")
    counts = hi - lo
    total = int(counts.sum())
    before = np.cumsum(counts) - counts
    idx = np.repeat(lo - before, counts) + np.arange(total, dtype=np.int64)
    pos = np.repeat(cols.pos - cols.start, counts) + row_of[idx]
    if not order or total == 0:
        return pos.astype(np.int64, copy=False)
    deadline.check()
    frame = found.select(sort_names)[idx].with_columns(pl.Series("__pos", pos))
    ranked = frame.sort(
        sort_names,
        descending=[d for _, d in order],
        nulls_last=True,
        maintain_order=True,  # stable: ties keep table order
    )
    return ranked.get_column("__pos").to_numpy().astype(np.int64, copy=False)


def read_positions(
    store: ObjectStore,
    manifest: Manifest,
    wanted: tuple[str, ...],
    at: np.ndarray,
    object_key: Callable[[str], str] = chunk_key,
) -> pa.Table:
    """The ``wanted`` columns of the table's rows at positions ``at``, in that order."""
    cols = manifest.columns
    piece = np.searchsorted(cols.pos, at, side="right") - 1
    chunk = cols.chunk[piece]
    row = cols.start[piece] + (at - cols.pos[piece])
    parts: list[pa.Table] = []
    index = np.empty(len(at), dtype=np.int64)
    offset = 0
    for k in np.unique(chunk).tolist():
        mine = np.flatnonzero(chunk == k)
        rows = np.unique(row[mine])
        # runs of consecutive rows, each read through the decoded row-group
        # cache: a page scattered over many row groups decodes each once, and
        # the next page touching them (or the same page again) decodes none
        cuts = np.flatnonzero(np.diff(rows) != 1) + 1
        for run in np.split(rows, cuts):
            parts.append(
                read_rows(store, cols.chunks[k], int(run[0]), len(run), wanted, object_key)
            )
        index[mine] = offset + np.searchsorted(rows, row[mine])
        offset += len(rows)
    if not parts:
        return pa.table({})
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    return table.take(pa.array(index))


def clear_cache() -> None:
    _positions.clear()
    _columns.clear()
    _pieces.clear()

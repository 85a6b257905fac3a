"""Filtered and sorted pages: which table positions a query selects, and in
what order.

A query (filter and/or sort over one table version) is answered in two steps:

1. **Positions.** The filter runs over each distinct chunk of the manifest,
   on only the columns the filter and sort name (decoded once by a lazy
   polars scan with projection pushdown and cached, see below), giving
   the matching rows as ``(chunk, row in chunk)``. These are mapped onto
   the manifest's pieces, vectorised: a
   chunk row that no piece uses is dropped, one used by several pieces
   (a manifest may repeat rows) appears once per use. The result is the
   matching **table positions** in table order, which is exactly what
   filtering the table's rows in order gives. A sort then orders them
   stably, so rows with equal sort keys stay in table order: the tie-break
   is the table position and pages never overlap or skip a row.
2. **Rows.** A page is a slice of those positions; its rows are read with
   ``core.chunks.read_rows`` run by run (only the row groups holding them,
   through the decoded row-group cache, ``DSA_PAGE_CACHE_BYTES``) and put
   back in page order. A page whose rows are scattered over many row groups
   decodes each of them once (~1 ms each for 2,048 rows × 12 columns); the
   cache makes the next read of the same rows cheap.

Two LRUs share one byte budget (``DSA_QUERY_CACHE_BYTES``): a quarter for
the positions, per (manifest, schema, filter text, sort text), as int64
numpy arrays (the next page of the same query costs a slice and a few
row-group reads); the rest for the decoded filter and sort columns, per
(chunk, column), so a new filter on columns already read runs in memory
(~5 ms instead of a ~50 ms scan per 1M-row column). When a query's columns
would take more than a third of the budget they are not kept: each chunk
is then scanned lazily with projection and predicate pushdown (row groups
whose statistics exclude the filter are skipped). Chunks and manifests
never change, so entries never go stale; they only age out.
"""

from __future__ import annotations

import contextlib

import numpy as np
import polars as pl
import pyarrow as pa

from core.chunks import chunk_key, read_rows
from core.config import get_settings
from core.lru import LRU
from core.objects import Manifest, Schema
from core.storage import ObjectStore
from features.data.filters import POLARS_TYPES

_positions: LRU[tuple[str, str, str, str], np.ndarray] = LRU(
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
) -> np.ndarray:
    """Table positions of the rows passing ``where``, in ``order`` (table
    order for ties and when unsorted); cached under ``key`` (the filter and
    sort texts) with the manifest and schema ids."""
    cache_key = (manifest.id, schema.id, *key)
    got = _positions.get(cache_key)
    if got is None:
        got = _compute(store, manifest, schema, where, order)
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
) -> np.ndarray:
    cols = manifest.columns
    if len(cols.chunk) == 0:
        return np.zeros(0, dtype=np.int64)
    types = {c.name: c.type for c in schema.columns}
    names = set(types)
    row_col = _fresh_name("__row", names)
    chunk_col = _fresh_name("__chunk", names)
    needed: list[str] = []
    for name in [*(where.meta.root_names() if where is not None else []), *(n for n, _ in order)]:
        if name not in needed:
            needed.append(name)
    sort_names = [n for n, _ in order]

    budget = get_settings().query_cache_bytes
    # decoded columns are kept (and reused by the next query on them) unless
    # they would crowd the cache: ~16 bytes a value is a generous estimate
    keep_columns = manifest.row_count * 16 * max(len(needed), 1) <= budget // 3
    frames = []
    with contextlib.ExitStack() as files:
        missing: list[tuple[str, str]] = []
        if keep_columns:
            missing = [(c, n) for c in cols.chunks for n in needed if _columns.get((c, n)) is None]
        if missing:  # decode them: one lazy scan per chunk, projection pushdown, in parallel
            by_chunk: dict[str, list[str]] = {}
            for c, n in missing:
                by_chunk.setdefault(c, []).append(n)
            scans = [
                pl.scan_parquet(files.enter_context(store.local_path(chunk_key(c)))).select(
                    pl.col(n).cast(POLARS_TYPES[types[n]]) for n in ns
                )
                for c, ns in by_chunk.items()
            ]
            _columns.max_bytes = budget - budget // 4
            for (c, ns), got in zip(by_chunk.items(), pl.collect_all(scans), strict=True):
                for n in ns:
                    _columns.put((c, n), got.get_column(n))
        for k, cid in enumerate(cols.chunks):
            series = [_columns.get((cid, n)) for n in needed] if keep_columns else []
            if keep_columns and all(x is not None for x in series):
                lf = pl.DataFrame(series).lazy().with_row_index(row_col)
            else:  # too big to keep (or evicted meanwhile): scan with both pushdowns
                path = files.enter_context(store.local_path(chunk_key(cid)))
                lf = pl.scan_parquet(path, row_index_name=row_col).select(
                    pl.col(row_col),
                    *(pl.col(n).cast(POLARS_TYPES[types[n]]) for n in needed),
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
        found = pl.concat(frames, how="vertical").collect()

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
    frame = found.select(sort_names)[idx].with_columns(pl.Series("__pos", pos))
    ranked = frame.sort(
        sort_names,
        descending=[d for _, d in order],
        nulls_last=True,
        maintain_order=True,  # stable: ties keep table order
    )
    return ranked.get_column("__pos").to_numpy().astype(np.int64, copy=False)


def read_positions(
    store: ObjectStore, manifest: Manifest, wanted: tuple[str, ...], at: np.ndarray
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
            parts.append(read_rows(store, cols.chunks[k], int(run[0]), len(run), wanted))
        index[mine] = offset + np.searchsorted(rows, row[mine])
        offset += len(rows)
    if not parts:
        return pa.table({})
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    return table.take(pa.array(index))


def clear_cache() -> None:
    _positions.clear()
    _columns.clear()

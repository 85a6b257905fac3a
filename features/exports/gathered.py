"""A fragmented version's rows as polars frames, window by window: for
CSV and TSV exports, whose writer is polars'.

``core.scan`` reads a window's row groups with pyarrow and takes its rows
there; the table then has to become a polars frame, which copies every text
value into polars' own layout. Here, for each chunk a window uses, polars
reads the stretch of rows from the window's first to its last piece of that
chunk (only the row groups holding them), and the window's rows are
gathered from those frames in table order: no conversion. Measured on the
bench table's version after two 0.1 % re-uploads (10M rows, 40,000 pieces,
79 chunks), windows and CSV writing: 5.4 s wall / 8.1 CPU-s against 5.9 /
8.7 through ``core.scan`` (docs/decisions/0044-csv-windows-gathered-by-polars.md).

A window whose stretches would hold far more rows than it does (pieces of
one chunk from all over it: a shuffled or merged version), or that uses
many chunks, or any window of a remote store, is read by ``core.scan`` as
before: what a window holds stays bounded by its rows.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import polars as pl
import pyarrow as pa

from core.chunks import will_read_rows
from core.config import get_settings
from core.scan import Scan, Window
from core.schema import arrow_schema
from core.storage import ObjectStore
from features.exports import rows
from features.exports.spec import Export

SPAN_FACTOR = 2  # a window's stretches may hold this many times its rows (plus a group a chunk)
MAX_CHUNKS = 16  # a window using more chunks than this is read by core.scan
_INDEX = np.uint32 if pl.get_index_type() == pl.UInt32 else np.uint64


def frames(
    store: ObjectStore, export: Export, src: rows.Source, *, offset: int, limit: int
) -> Iterator[tuple[Window, pl.DataFrame]]:
    """Table rows ``[offset, offset + limit)`` of the export, window by window
    (as ``rows.windows``): each window's rows filtered, projected and cast to
    ``rows.target(export)``, as a polars frame."""
    settings = get_settings()
    by_name = {c.name: c for c in export.schema.columns}
    read = arrow_schema([by_name[n] for n in export.read_columns])
    cols = list(export.read_columns)
    scan = Scan(
        store,
        src.manifest,
        cols,
        schema=pa.schema([f.with_nullable(True) for f in read]),
        offset=offset,
        limit=limit,
        batch_rows=settings.export_batch_rows,
        first_rows=min(settings.row_group_rows, settings.export_batch_rows),
        key=src.key,
    )
    read_types = _dtypes(read)
    out_types = _dtypes(rows.target(export))
    group_rows = settings.row_group_rows
    for w in scan.windows():
        src.reading()
        stretches = None if store.remote else _stretches(w, group_rows)
        if stretches is None:
            table = scan.read(w)
            frame = pl.from_arrow(table.combine_chunks())  # a chunk a column: ~10 % faster
            assert isinstance(frame, pl.DataFrame)
        else:
            frame = _gathered(store, src, w, stretches, cols, read_types)
        if export.predicate is not None and frame.height:
            frame = frame.filter(export.predicate.fill_null(False))
        yield w, frame.select(cols[: export.out_count]).cast(out_types)


def _dtypes(schema: pa.Schema) -> pl.Schema:
    frame = pl.from_arrow(schema.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.schema


def _stretches(w: Window, group_rows: int) -> list[tuple[int, int, int]] | None:
    """For each chunk window ``w`` uses (in order of first use): its number
    and the rows ``[lo, hi)`` from its first piece's to its last's; None
    when they are too many or hold too many rows (see the module's docstring)."""
    numbers, first, which = np.unique(w.chunk, return_index=True, return_inverse=True)
    if len(numbers) > MAX_CHUNKS:
        return None
    ends = w.start + w.length
    lo = np.full(len(numbers), np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.zeros(len(numbers), dtype=np.int64)
    np.minimum.at(lo, which, w.start)
    np.maximum.at(hi, which, ends)
    if int((hi - lo).sum()) > SPAN_FACTOR * w.rows + group_rows * len(numbers):
        return None
    order = np.argsort(first, kind="stable")
    return [(int(numbers[j]), int(lo[j]), int(hi[j])) for j in order]


def _gathered(
    store: ObjectStore,
    src: rows.Source,
    w: Window,
    stretches: list[tuple[int, int, int]],
    cols: list[str],
    types: pl.Schema,
) -> pl.DataFrame:
    """Window ``w``'s rows in table order, read as ``stretches`` of their
    chunks by polars and gathered."""
    chunks = src.manifest.columns.chunks
    for k, lo, hi in stretches:  # every stretch's bytes asked for before any is read
        will_read_rows(store, src.key(chunks[k]), lo, hi - lo, cols)
    parts: list[pl.DataFrame] = []
    base = np.zeros(len(chunks) if len(stretches) > 1 else 0, dtype=np.int64)
    at = 0
    for k, lo, hi in stretches:
        with store.local_path(src.key(chunks[k])) as path:
            part = pl.scan_parquet(path).slice(lo, hi - lo).select(cols).collect()
        parts.append(part.cast(types))
        if len(stretches) > 1:
            base[k] = at - lo
        at += part.height
    if len(stretches) == 1:
        _, lo, _ = stretches[0]
        if len(w.chunk) == 1:
            return parts[0]
        first = w.start - lo
    else:
        first = base[w.chunk] + w.start
    before = np.cumsum(w.length) - w.length
    at_rows = np.repeat(first - before, w.length) + np.arange(w.rows, dtype=np.int64)
    # one chunk a column, indices of polars' own type: the gather then costs
    # about a third of what it did over the parts with int64 indices
    joined = pl.concat(parts, rechunk=True) if len(parts) > 1 else parts[0].rechunk()
    return joined[pl.Series(at_rows.astype(_INDEX, copy=False))]

"""A fragmented version's rows as polars frames, window by window: for
CSV and TSV exports, whose writer is polars'.

``core.scan`` reads a window's row groups with pyarrow and takes its rows
there; the table then has to become a polars frame, which copies every text
value into polars' own layout. Here, for each chunk a window uses, polars
reads the stretch of rows from the window's first to its last piece of that
chunk (only the row groups holding them; at least ``BLOCK_ROWS``, kept for
the windows after: ``_Blocks``), and the window's rows are gathered from
those frames in table order: no conversion. Measured on the bench table's
version after two 0.1 % re-uploads (10M rows, 40,000 pieces, 79 chunks),
windows and CSV writing: 5.4 s wall / 8.1 CPU-s against 5.9 / 8.7 through
``core.scan``; after ten re-uploads (~100,000 pieces), exports of 158–165
MB/s reading each stretch on its own, 219–223 with the blocks
(docs/decisions/0044-csv-windows-gathered-by-polars.md).

A window whose stretches would hold far more rows than it does (pieces of
one chunk from all over it: a shuffled or merged version), or that uses
many chunks, or any window of a remote store, is read by ``core.scan`` as
before: what a window holds stays bounded by its rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from core.chunks import forget, will_read_rows
from core.config import get_settings
from core.errors import StoredObjectError
from core.scan import Scan, Window
from core.schema import arrow_schema
from core.storage import ObjectStore
from features.exports import rows
from features.exports.spec import Export

SPAN_FACTOR = 2  # a window's stretches may hold this many times its rows (plus a group a chunk)
MAX_CHUNKS = 16  # a window using more chunks than this is read by core.scan
BLOCK_ROWS = 16_384  # rows a read of a chunk takes at least (see _Blocks)
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
    blocks = _Blocks(store, cols, read_types)
    for w in scan.windows():
        src.reading()
        stretches = None if store.remote else _stretches(w, group_rows)
        if stretches is None:
            blocks.keep([])
            table = scan.read(w)
            frame = pl.from_arrow(table.combine_chunks())  # a chunk a column: ~10 % faster
            assert isinstance(frame, pl.DataFrame)
        else:
            scan.skip(w)  # what it kept from a window it read is not needed now
            frame = _gathered(src, w, stretches, blocks)
        if export.predicate is not None and frame.height:
            frame = frame.filter(export.predicate.fill_null(False))
        yield w, frame.select(cols[: export.out_count]).cast(out_types)


def _dtypes(schema: pa.Schema) -> pl.Schema:
    frame = pl.from_arrow(schema.empty_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.schema


@dataclass(frozen=True)
class _Stretches:
    """The rows ``[lo[j], hi[j])`` of chunk ``chunk[j]`` for each chunk a
    window uses, in order of first use; ``slot``: each piece's stretch."""

    chunk: list[int]
    lo: list[int]
    hi: list[int]
    slot: np.ndarray


def _stretches(w: Window, group_rows: int) -> _Stretches | None:
    """The stretches of window ``w``'s chunks (``_Stretches``); None when
    they are too many or hold too many rows (see the module's docstring)."""
    numbers, first, which = np.unique(w.chunk, return_index=True, return_inverse=True)
    if not len(numbers) or len(numbers) > MAX_CHUNKS:
        return None
    lo = np.full(len(numbers), np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.zeros(len(numbers), dtype=np.int64)
    np.minimum.at(lo, which, w.start)
    np.maximum.at(hi, which, w.start + w.length)
    if int((hi - lo).sum()) > SPAN_FACTOR * w.rows + group_rows * len(numbers):
        return None
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return _Stretches(numbers[order].tolist(), lo[order].tolist(), hi[order].tolist(), rank[which])


class _Blocks:
    """The rows polars read last from each chunk the window uses: a stretch
    within them is sliced, not read again. A read takes at least
    ``BLOCK_ROWS`` rows, so the few rows a window takes from each of a
    re-uploaded version's chunks of changed rows (tens, at 0.1 % changed)
    come from a block read once for hundreds of windows: each read costs
    ~1.5 ms whatever its size (polars parses the chunk's footer)."""

    def __init__(self, store: ObjectStore, cols: list[str], types: pl.Schema) -> None:
        self.store, self.cols, self.types = store, cols, types
        self.kept: dict[str, tuple[int, pl.DataFrame]] = {}

    def keep(self, keys: list[str]) -> None:
        """Only ``keys``' blocks stay (a window's chunks)."""
        self.kept = {k: v for k, v in self.kept.items() if k in keys}

    def missing(self, key: str, lo: int, hi: int) -> bool:
        got = self.kept.get(key)
        return got is None or not (got[0] <= lo and hi <= got[0] + got[1].height)

    def rows(self, key: str, lo: int, hi: int) -> pl.DataFrame:
        """Rows ``[lo, hi)`` of chunk object ``key``."""
        if self.missing(key, lo, hi):
            end = lo + max(hi - lo, BLOCK_ROWS)
            self.kept[key] = (lo, _read(self.store, key, lo, end, self.cols).cast(self.types))
        at, frame = self.kept[key]
        return frame.slice(lo - at, hi - lo)


def _gathered(src: rows.Source, w: Window, got: _Stretches, blocks: _Blocks) -> pl.DataFrame:
    """Window ``w``'s rows in table order, from stretches of their chunks
    read by polars (``blocks``), gathered."""
    keys = [src.key(src.manifest.columns.chunks[k]) for k in got.chunk]
    blocks.keep(keys)
    spans = list(zip(keys, got.lo, got.hi, strict=True))
    for key, lo, hi in spans:  # all asked for before any is read
        if blocks.missing(key, lo, hi):
            will_read_rows(blocks.store, key, lo, max(hi - lo, BLOCK_ROWS), blocks.cols)
    parts = [blocks.rows(key, lo, hi) for key, lo, hi in spans]
    # one chunk a column (the CSV writer slows on frames of many small
    # chunks), indices of polars' own type: the gather then costs about a
    # third of what it did over the parts with int64 indices
    joined = pl.concat(parts, rechunk=True) if len(parts) > 1 else parts[0].rechunk()
    if len(w.chunk) == 1:
        return joined  # one piece: its stretch
    sizes = np.asarray([hi - lo for lo, hi in zip(got.lo, got.hi, strict=True)], dtype=np.int64)
    base = np.cumsum(sizes) - sizes - np.asarray(got.lo, dtype=np.int64)
    first = base[got.slot] + w.start  # each piece's first row in ``joined``
    before = np.cumsum(w.length) - w.length
    at_rows = np.repeat(first - before, w.length) + np.arange(w.rows, dtype=np.int64)
    assert joined.height <= np.iinfo(_INDEX).max
    return joined[pl.Series(at_rows.astype(_INDEX, copy=False))]


def _read(store: ObjectStore, key: str, lo: int, hi: int, cols: list[str]) -> pl.DataFrame:
    """Rows ``[lo, hi)`` of the chunk object ``key``, read by polars (only the
    row groups holding them); a damaged object is reported as
    ``core.chunks.opened`` reports it."""
    try:
        with store.local_path(key) as path:
            lazy = pl.scan_parquet(path, glob=False)  # a path, not a pattern
            return lazy.slice(lo, hi - lo).select(cols).collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        forget(key)
        raise StoredObjectError(
            f"object {key} cannot be read ({type(exc).__name__}); it may be damaged: run dsa fsck"
        ) from exc

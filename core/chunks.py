"""Chunk codec: a Parquet file (zstd) of rows plus their ``_row_hash``.

A chunk's id is BLAKE3 of its row hashes in order (``core.hashing.chunk_id``),
so it names logical content: the same rows always make the same chunk, and a
retried import rewrites nothing. Row groups hold ``row_group_rows`` rows
(2,048 by default) so a 100-row page decodes one or two small row groups.
Measured on the benchmark table (12 columns, zstd 1): decoding one row group
takes 3.1 ms p50 / 11 ms p95 at 8,192 rows, 2.1 / 5.7 ms at 4,096, 0.9 /
1.6 ms at 2,048 and 1.4 / 4.3 ms at 1,024, while files grow by only 2.5 %
from 8,192 to 2,048; hence 2,048.

Reads go through two caches: Parquet footers (opened files' metadata) and
decoded row groups, the latter bounded by ``DSA_PAGE_CACHE_BYTES``.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from core import failpoints
from core.config import get_settings
from core.errors import StoredObjectError
from core.hashing import ROW_HASH_BYTES, chunk_id, row_hashes
from core.lru import LRU
from core.schema import Column, arrow_schema
from core.storage import ObjectStore, needs_write

ROW_HASH_COLUMN = "_row_hash"


def chunk_key(cid: str) -> str:
    return f"chunks/{cid}"


def parquet_writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    """A writer of chunk files (and of read copies, ``core.layouts``): zstd
    level 1, no dictionary pages, statistics for every column but
    ``_row_hash``; write with ``row_group_size=DSA_ROW_GROUP_ROWS``.

    No dictionary pages: zstd already captures the repetition they would, and
    they cost time (measured on the bench table, 524k rows: 0.73 CPU-s / 25.2
    MB with dictionaries for text, dates and flags, 0.57 CPU-s / 24.3 MB
    without). Row hashes get no statistics."""
    return pq.ParquetWriter(
        path,
        schema,
        compression="zstd",
        compression_level=1,
        use_dictionary=False,
        write_statistics=[n for n in schema.names if n != ROW_HASH_COLUMN],
    )


def text_extremes(footer: pq.FileMetaData, columns: list[Column]) -> dict[str, tuple[Any, Any]]:
    """The least and greatest value of each text column of a chunk, from the
    row groups' statistics its writer computed anyway (by bytes, as polars
    orders strings); ``(None, None)`` for a column of nulls only. A column
    is left out where any row group's statistics are missing (the writer
    drops those of values past its size limit): its extremes are computed."""
    out: dict[str, tuple[Any, Any]] = {}
    for i, col in enumerate(columns):
        if col.type != "string":
            continue
        lo = hi = None
        for r in range(footer.num_row_groups):
            stats = footer.row_group(r).column(i).statistics
            if stats is None:
                break
            if not stats.has_min_max:
                if stats.num_values:  # values, but no statistics of them
                    break
                continue
            a, b = stats.min, stats.max
            lo = a if lo is None or a < lo else lo
            hi = b if hi is None or b > hi else hi
        else:
            out[col.name] = (lo, hi)
    return out


def chunk_schema(columns: list[Column]) -> pa.Schema:
    """A chunk's Arrow schema: the columns, then ``_row_hash``."""
    return arrow_schema(columns).append(
        pa.field(ROW_HASH_COLUMN, pa.binary(ROW_HASH_BYTES), nullable=False)
    )


def write_chunk(
    store: ObjectStore,
    table: pa.Table,
    columns: list[Column],
    *,
    tmp_dir: Path,
    hashes: bytes | None = None,
    on_footer: Callable[[pq.FileMetaData], None] | None = None,
) -> tuple[str, int]:
    """Hash (unless given), encode and store ``table``; returns (chunk id, rows).
    ``on_footer`` gets the written file's footer (not called when the chunk
    was stored already)."""
    settings = get_settings()
    if hashes is None:
        hashes = row_hashes(table, columns)
    cid = chunk_id(hashes)
    key = chunk_key(cid)
    if needs_write(store, key):
        hash_arr = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(ROW_HASH_BYTES), table.num_rows, [None, pa.py_buffer(hashes)]
        )
        schema = chunk_schema(columns)
        out = pa.Table.from_arrays([*table.columns, hash_arr], schema=schema)
        tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp = tmp_dir / f"chunk-{uuid.uuid4().hex}.parquet"
        try:
            with parquet_writer(tmp, schema) as writer:
                writer.write_table(out, row_group_size=settings.row_group_rows)
            store.put_file(key, tmp, move=True)
            if on_footer is not None:
                on_footer(writer.writer.metadata)
        finally:
            tmp.unlink(missing_ok=True)
        failpoints.hit("chunk_written")
    return cid, table.num_rows


@dataclass
class _Shape:
    """What most reads need of a Parquet object's footer: where its row groups
    start and end, and its ``dsa.*`` key-value metadata."""

    starts: list[int]  # first row of each row group
    ends: list[int]
    kv: dict[bytes, bytes]


# Parsed footers, by object key. A parsed footer holds ~10x its serialised
# size (measured: 766 KB for a 131,072-row chunk's 81 KB footer of 64 row
# groups x 13 columns), so the whole footers kept are few (``_FOOTER_BYTES``
# of them, counted that way) and re-parsed when a read needs one again; the
# row-group shapes, ~1 KB each, are kept for many more objects. Before, the
# footers were kept by their serialised size: an export of a 35M-row table
# (267 chunks) held ~200 MB of them. No file is kept open: a memory-mapped
# file keeps every page it has read in the process's RSS, and an open file
# keeps a deleted read copy's disk space; each read opens the object.
_FOOTER_GROWTH = 10  # parsed footer bytes per serialised byte (measured ~9.4)
_FOOTER_BYTES = 16 * 1024**2  # ~20 footers of 131,072-row chunks; a parse costs ~0.8 ms
_footers: LRU[str, pq.FileMetaData] = LRU(
    max_items=4096,
    max_bytes=_FOOTER_BYTES,
    size_of=lambda m: m.serialized_size * _FOOTER_GROWTH,
)
_shapes: LRU[str, _Shape] = LRU(
    max_items=100_000, max_bytes=32 * 1024**2, size_of=lambda f: 200 + 80 * len(f.starts)
)
# where each column chunk of each row group lies in the object (for read-ahead
# hints): the column names and a (groups, columns, 2) array of [first, end) bytes
_column_spans: LRU[str, tuple[list[str], np.ndarray]] = LRU(
    max_items=4096, max_bytes=32 * 1024**2, size_of=lambda v: 200 + v[1].nbytes
)
_groups: LRU[tuple[str, int, tuple[str, ...] | None], pa.Table] = LRU(
    max_items=100_000, max_bytes=256 * 1024**2, size_of=lambda t: t.nbytes
)


def footer(store: ObjectStore, key: str, *, keep: bool = True) -> pq.FileMetaData:
    """The parsed footer of the Parquet object ``key`` (a chunk or a part of a
    read copy): statistics and all; kept for the next read unless ``keep``
    is false (its shape is kept either way)."""
    meta = _footers.get(key)
    if meta is None:
        try:
            with store.open_arrow(key) as file:
                meta = pq.ParquetFile(file, pre_buffer=False).metadata
        except (OSError, pa.ArrowException) as exc:
            raise StoredObjectError(
                f"object {key} cannot be read ({type(exc).__name__}); it may be damaged: "
                "run dsa fsck"
            ) from exc
        if keep:
            _footers.put(key, meta)
        if _shapes.get(key) is None:
            _shapes.put(key, _shape_of(meta))
    return meta


def _shape_of(meta: pq.FileMetaData) -> _Shape:
    starts, ends, total = [], [], 0
    for i in range(meta.num_row_groups):
        starts.append(total)
        total += meta.row_group(i).num_rows
        ends.append(total)
    # only DSA's own keys: the rest (Arrow's schema, ~3 KB) is the footer's
    kv = {k: v for k, v in (meta.metadata or {}).items() if k.startswith(b"dsa.")}
    return _Shape(starts, ends, kv)


def _shape(store: ObjectStore, key: str, *, keep: bool = True) -> _Shape:
    got = _shapes.get(key)
    if got is None:
        got = _shape_of(footer(store, key, keep=keep))
        _shapes.put(key, got)
    return got


@contextmanager
def opened(store: ObjectStore, key: str) -> Iterator[pq.ParquetFile]:
    """The Parquet object ``key`` open for reading, its footer parsed once
    while it stays cached, closed on leaving. No pre-buffering from a local
    store: the file is memory-mapped, and pre-buffering's coalesced async
    reads cost ~2-3x the CPU of a column read across many small row groups
    (measured: 1M row hashes in 490 row groups, ~40 ms with it, ~15 ms
    without; one row group of 12 columns no slower). From a remote store
    (S3) pre-buffering coalesces a read's column chunks into few ranged GETs
    (a 1M-row Parquet export made ~1,300 GETs without it). A ``ParquetFile``
    is not safe to share between threads: each read has its own."""
    try:
        meta = footer(store, key)
        with store.open_arrow(key) as file:
            yield pq.ParquetFile(file, metadata=meta, pre_buffer=store.remote)
    except (OSError, pa.ArrowException) as exc:
        forget(key)  # a footer kept from before the damage is not trusted either
        raise StoredObjectError(
            f"object {key} cannot be read ({type(exc).__name__}); it may be damaged: run dsa fsck"
        ) from exc


def forget(key: str) -> None:
    """Drop what is cached of ``key``'s footer (the next read parses the object's)."""
    _footers.pop(key)
    _shapes.pop(key)


def row_group_starts(
    store: ObjectStore, key: str, *, keep: bool = True
) -> tuple[np.ndarray, dict[bytes, bytes]]:
    """The first row of each row group of the Parquet object ``key`` (a chunk:
    ``chunk_key(cid)``), then its row count (int64), and its ``dsa.*``
    key-value metadata. ``keep=False``: the whole footer is not kept if it had to be
    parsed (a check of many objects that reads none of them)."""
    f = _shape(store, key, keep=keep)
    starts = np.asarray([*f.starts, f.ends[-1] if f.ends else 0], dtype=np.int64)
    return starts, f.kv


def _spans(store: ObjectStore, key: str) -> tuple[list[str], np.ndarray]:
    got = _column_spans.get(key)
    if got is None:
        meta = footer(store, key)
        groups, width = meta.num_row_groups, meta.num_columns
        spans = np.zeros((groups, width, 2), np.int64)
        for i in range(groups):
            group = meta.row_group(i)
            for j in range(width):
                col = group.column(j)
                first = col.data_page_offset
                if col.has_dictionary_page and col.dictionary_page_offset:
                    first = min(first, col.dictionary_page_offset)
                spans[i, j] = (first, first + col.total_compressed_size)
        names = [meta.row_group(0).column(j).path_in_schema for j in range(width)] if groups else []
        got = (names, spans)
        _column_spans.put(key, got)
    return got


def will_read_groups(
    store: ObjectStore, key: str, first: int, last: int, columns: Sequence[str] | None = None
) -> None:
    """Tell the store that row groups ``first`` to ``last`` of the Parquet
    object ``key`` are read soon: the bytes of ``columns`` (None: all) in
    them, one hint per stretch of adjacent column chunks
    (``ObjectStore.will_read``). Nothing for a remote store."""
    if store.remote:
        return
    names, spans = _spans(store, key)
    picked = spans[first : last + 1]
    if columns is not None:
        wanted = set(columns)
        picked = picked[:, [j for j, name in enumerate(names) if name in wanted]]
    flat = picked.reshape(-1, 2)
    if not len(flat):
        return
    flat = flat[np.argsort(flat[:, 0], kind="stable")]
    reach = np.maximum.accumulate(flat[:, 1])
    cuts = np.flatnonzero(np.concatenate(([True], flat[1:, 0] > reach[:-1])))
    for lo, hi in zip(
        flat[cuts, 0].tolist(), np.maximum.reduceat(flat[:, 1], cuts).tolist(), strict=True
    ):
        if hi > lo:
            store.will_read(key, lo, hi - lo)


def will_read_rows(
    store: ObjectStore, key: str, start: int, length: int, columns: Sequence[str] | None = None
) -> None:
    """Tell the store that rows ``[start, start + length)`` of the Parquet
    object ``key`` are read soon: ``columns`` of the row groups holding them."""
    if length <= 0 or store.remote:
        return
    shape = _shape(store, key)
    if shape.starts:
        first = bisect.bisect_right(shape.starts, start) - 1
        last = bisect.bisect_right(shape.starts, start + length - 1) - 1
        will_read_groups(store, key, max(first, 0), max(last, 0), columns)


def _group(
    store: ObjectStore, cid: str, key: str, i: int, columns: tuple[str, ...] | None
) -> pa.Table:
    cached = (cid, i, columns)
    t = _groups.get(cached)
    if t is None:
        with opened(store, key) as pf:
            # one thread: a 2,048-row group's columns are too small to share
            # out (measured: 0.60 ms against 0.74 with Arrow's threads)
            t = pf.read_row_group(i, columns=list(columns) if columns else None, use_threads=False)
        _groups.max_bytes = get_settings().page_cache_bytes
        _groups.put(cached, t)
    return t


def read_rows(
    store: ObjectStore,
    cid: str,
    start: int,
    length: int,
    columns: tuple[str, ...] | None = None,
    key: Callable[[str], str] = chunk_key,
) -> pa.Table:
    """Rows [start, start+length) of a chunk: the named columns, or all of them
    (``_row_hash`` included). Only the row groups holding them are decoded.
    ``key``: the object the chunk is read from (a read copy's is under
    ``layouts/``, see ``core.layouts``)."""
    obj = key(cid)
    shape = _shape(store, obj)
    end = start + length
    i = bisect.bisect_right(shape.starts, start) - 1
    parts = []
    while i < len(shape.starts) and shape.starts[i] < end:
        g = _group(store, cid, obj, i, columns)
        lo = max(start, shape.starts[i]) - shape.starts[i]
        hi = min(end, shape.ends[i]) - shape.starts[i]
        parts.append(g.slice(lo, hi - lo))
        i += 1
    if len(parts) == 1:
        return parts[0]
    return pa.concat_tables(parts)


_hash_columns: LRU[str, np.ndarray] = LRU(
    max_items=4096, max_bytes=256 * 1024**2, size_of=lambda a: a.nbytes
)


def read_hashes(store: ObjectStore, cid: str, *, keep: bool = True) -> np.ndarray:
    """Every row hash of a chunk as an ``(rows, 2)`` uint64 array (16 bytes a
    row), cached unless ``keep`` is false (a pass over every chunk of a big
    table, which would only churn the cache): comparing and merging versions
    match rows by these alone."""
    got = _hash_columns.get(cid)
    if got is None:
        with opened(store, chunk_key(cid)) as pf:
            got = hash_words(pf.read(columns=[ROW_HASH_COLUMN]).column(0))
        if keep:
            _hash_columns.put(cid, got)
    return got


def hash_words(col: pa.ChunkedArray) -> np.ndarray:
    """A ``_row_hash`` column (16-byte values) as an ``(rows, 2)`` uint64
    array, without copying when it is one chunk."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    buf = arr.buffers()[1]
    words = np.frombuffer(buf, dtype=np.uint64, count=2 * len(arr), offset=arr.offset * 16)
    return words.reshape(-1, 2)


def take_rows(
    store: ObjectStore,
    cid: str,
    rows: np.ndarray,
    columns: tuple[str, ...],
    key_of: Callable[[str], str] = chunk_key,
) -> pa.Table:
    """The named columns of a chunk's rows at ``rows`` (sorted, unique), in
    that order. Decodes only the row groups holding them: through the page
    cache when they are few, in one multi-threaded read when they are many
    (rows scattered over a whole chunk, as in a compare). ``key_of``: the
    object the chunk is read from (as in ``read_rows``)."""
    key = key_of(cid)
    shape = _shape(store, key)
    starts = np.asarray(shape.starts, dtype=np.int64)
    group_of = np.searchsorted(starts, rows, side="right") - 1
    groups = np.unique(group_of)
    if len(groups) <= 4:
        parts = [_group(store, cid, key, int(g), columns) for g in groups]
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    else:
        with opened(store, key) as pf:
            table = pf.read_row_groups(groups.tolist(), columns=list(columns))
    sizes = np.asarray(shape.ends, dtype=np.int64)[groups] - starts[groups]
    offset_of = np.zeros(len(shape.starts), dtype=np.int64)
    offset_of[groups] = np.cumsum(sizes) - sizes
    return table.take(pa.array(offset_of[group_of] + rows - starts[group_of]))


def read_chunk_columns(store: ObjectStore, cid: str, columns: tuple[str, ...]) -> pa.Table:
    """Whole columns of a chunk, in one read (not cached)."""
    with opened(store, chunk_key(cid)) as pf:
        return pf.read(columns=list(columns))


def warm_up() -> None:
    """Write, read and take rows of a tiny chunk-like Parquet file once, in
    memory: the first row-group read and the first ``take`` of a process
    each pay a one-time cost (measured: ~3.5 ms for the first ``take``, ~1–2
    ms for the first zstd read), which would land on its first page."""
    table = pa.table(
        {
            "i": pa.array([1, None], pa.int64()),
            "f": pa.array([0.5, None], pa.float64()),
            "s": pa.array(["a", None], pa.large_string()),
            "d": pa.array([1, None], pa.date32()),
            "t": pa.array([1, None], pa.timestamp("us")),
            "b": pa.array([True, None], pa.bool_()),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", use_dictionary=False)
    pf = pq.ParquetFile(pa.BufferReader(sink.getvalue()), pre_buffer=False)
    read = pf.read_row_group(0)
    read.take(pa.array([1, 0]))
    pa.concat_tables([read, read]).combine_chunks()

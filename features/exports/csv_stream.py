"""CSV and TSV exports, written by polars' CSV writer on its own threads
into a bounded queue of parts, which the response drains ~1 MB at a time
(``body``): every core works, mostly without the GIL.

The rows come in table order two ways (``_write_rows``): runs of long
pieces (a fresh import's chunks) are read by polars' streaming engine
straight from the chunks, a few pieces a query; runs of short pieces (a
re-uploaded, merged or upserted version's) are read chunk by chunk a window
at a time (``gathered.frames``) on a helper thread, and each
window written from memory.

Dates and datetimes are looked up rather than formatted where the chunks'
Parquet statistics place them within 1900–2100, and text columns whose
least value starts above ``@`` skip the formula check (``CsvEncoder.frame``;
docs/decisions/0015-csv-exports-streamed-by-polars.md).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from core.chunks import footer, will_read_rows
from core.config import get_settings
from core.objects import Manifest
from core.storage import ObjectStore
from features.exports import gathered, rows
from features.exports.formats import CsvEncoder
from features.exports.spec import Export

CSV_QUERY_PIECES = 4  # long pieces per polars query (see _write_rows)
CSV_LONG_PIECE_ROWS = 16_384  # a piece this long is read by polars from its chunk
CSV_LOOKUP_ROWS = 16_384  # a window of fewer rows formats dates itself (see CsvEncoder.frame)
CSV_PARTS = 8  # parts polars wrote (~280 KB each) not taken by the response yet
SEND_BYTES = 1024 * 1024  # a response write joins parts up to about this size
# (32 parts and 4 MB writes: ~10 MiB more peak RSS, no faster)


class _Parts:
    """The file polars' CSV sink writes to: each part goes to the response
    through a bounded queue, the writer waiting while the client is behind.
    Once the response is gone (``stop``) a write fails, which ends the query."""

    def __init__(self, stop: threading.Event) -> None:
        self.queue: queue.Queue[bytes | None] = queue.Queue(CSV_PARTS)
        self.stop = stop

    def write(self, data: Any) -> int:
        part = bytes(data)
        if not self._put(part):
            raise BrokenPipeError("the export's client went away")
        return len(part)

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        self._put(None)

    def _put(self, item: bytes | None) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False


def _chunk_ranges(meta: pq.FileMetaData, wanted: pa.Schema) -> dict[str, tuple[Any, Any]]:
    """The least and greatest stored value (raw: days, microseconds, bytes) of
    each of ``wanted``'s columns in a chunk, from its Parquet statistics; a
    column stored as another type, or without statistics, is left out.

    Reads only row groups' statistics: ``meta.schema`` (pyarrow 26) keeps
    ~0.5 MiB alive for good each time it is read from a newly opened file."""
    if meta.num_row_groups == 0:
        return {}
    first = meta.row_group(0)
    index = {first.column(j).path_in_schema: j for j in range(first.num_columns)}
    out: dict[str, tuple[Any, Any]] = {}
    for field in wanted:
        j = index.get(field.name)
        if j is None:
            continue
        span: tuple[Any, Any] | None = None
        for i in range(meta.num_row_groups):
            group = meta.row_group(i)
            st = group.column(j).statistics
            if st is not None and st.has_min_max:
                if span is None and not _stored_as(field.type, st.logical_type.to_json()):
                    break
                lo, hi = st.min_raw, st.max_raw
                span = (lo, hi) if span is None else (min(span[0], lo), max(span[1], hi))
            elif st is None or not st.has_null_count or st.null_count != group.num_rows:
                span = None  # values of unknown range
                break
        if span is not None:
            out[field.name] = span
    return out


def _stored_as(t: pa.DataType, logical: str) -> bool:
    """Whether a Parquet column of this logical type (JSON) holds ``t`` as
    ``CsvEncoder.frame`` expects its raw values: days, microseconds, text."""
    lt = orjson.loads(logical)
    if pa.types.is_date32(t):
        return bool(lt.get("Type") == "Date")
    if pa.types.is_timestamp(t):
        return bool(
            lt.get("Type") == "Timestamp"
            and t.unit == "us"
            and lt.get("timeUnit") == "microseconds"
            and lt.get("isAdjustedToUTC") == (t.tz is not None)
        )
    return bool(lt.get("Type") == "String")


def _ranges(
    store: ObjectStore,
    key: Callable[[str], str],
    chunks: list[str],
    rows: int,
    wanted: pa.Schema,
    known: dict[str, dict[str, tuple[Any, Any]]],
) -> dict[str, tuple[Any, Any]]:
    """The value ranges of ``wanted``'s columns over ``rows`` rows of some
    chunks, from their statistics (read once per chunk into ``known``); none
    under ``CSV_LOOKUP_ROWS`` rows, where looking dates up costs more than it
    saves (measured on ~15-row queries: 6,800 rows/s with, 7,800 without)."""
    if rows < CSV_LOOKUP_ROWS:
        return {}
    for cid in set(chunks) - known.keys():
        known[cid] = _chunk_ranges(footer(store, key(cid)), wanted)
    out: dict[str, tuple[Any, Any]] = {}
    for name in wanted.names:
        spans = [known[cid].get(name) for cid in chunks]
        if all(spans):
            out[name] = (min(sp[0] for sp in spans), max(sp[1] for sp in spans))  # type: ignore[index]
    return out


@dataclass(frozen=True)
class _Long:
    """A few long pieces, which polars reads straight from their chunks."""

    pieces: list[tuple[str, int, int]]


@dataclass(frozen=True)
class _Short:
    """Table rows ``[lo, hi)`` made of short pieces, read chunk by chunk."""

    lo: int
    hi: int


def _plan(manifest: Manifest, first: int) -> Iterator[_Long | _Short]:
    """The table's rows in order as runs of long pieces (``CSV_LONG_PIECE_ROWS``
    rows or more, ``CSV_QUERY_PIECES`` to a query) and of short ones; the
    first ``first`` rows on their own, so the first bytes leave quickly."""
    cols = manifest.columns
    n = len(cols.length)
    if n == 0:
        return
    long = cols.length >= CSV_LONG_PIECE_ROWS
    cuts = [0, *(np.flatnonzero(long[1:] != long[:-1]) + 1).tolist(), n]
    for a, b in itertools.pairwise(cuts):
        lo, hi = int(cols.pos[a]), int(cols.pos[b - 1] + cols.length[b - 1])
        spans = [(lo, hi)]
        if lo < first < hi:
            spans = [(lo, first), (first, hi)]
        for s_lo, s_hi in spans:
            if not long[a]:
                yield _Short(s_lo, s_hi)
                continue
            pieces = manifest.slices(s_lo, s_hi - s_lo)
            for i in range(0, len(pieces), CSV_QUERY_PIECES):
                yield _Long(pieces[i : i + CSV_QUERY_PIECES])


def _frames(
    store: ObjectStore, export: Export, src: rows.Source
) -> Iterator[_Long | tuple[pl.DataFrame, list[str], int]]:
    """What ``_write_rows`` writes, in order: long pieces as they are (polars
    reads them when it writes them), short ones window by window (read here,
    on ``rows.ahead``'s helper thread, ``gathered.frames``) with their
    chunks and rows."""
    chunks = src.manifest.columns.chunks
    for part in _plan(src.manifest, min(get_settings().row_group_rows, export.row_count)):
        if isinstance(part, _Long):
            # read ahead by the kernel while the part before is written (this
            # runs a part ahead, on ``rows.ahead``'s thread), not page by page
            for cid, start, length in part.pieces:
                will_read_rows(store, src.key(cid), start, length, export.read_columns)
            yield part
            continue
        for w, frame in gathered.frames(
            store, export, src, offset=part.lo, limit=part.hi - part.lo
        ):
            yield frame, [chunks[k] for k in w.chunk_numbers()], w.rows


def _write_rows(
    store: ObjectStore, export: Export, enc: CsvEncoder, out: _Parts, src: rows.Source
) -> None:
    """A CSV/TSV export's rows, written to ``out`` by polars' CSV writer: long
    pieces a few at a time by its streaming engine straight from the chunks'
    Parquet (reading, filtering and writing on its threads, releasing the
    GIL); short ones (a re-uploaded or merged version's) read by chunk,
    window by window (``gathered.frames``), one window ahead. Past ~8 large
    pieces a query's memory grows with each piece it concatenates (measured
    with 131,072-row pieces, 2 threads: peak RSS +70 MiB for 2 to 8 pieces,
    +100 for 9, +180 for 12, +255 for 16), while a query costs only ~10 ms
    to start. Each query or window gets the value ranges of its chunks'
    date, datetime and text columns (``CsvEncoder.frame``)."""
    key = src.key
    cols = list(export.read_columns)
    target = rows.target(export)
    dtypes = pl.from_arrow(target.empty_table()).schema  # type: ignore[union-attr]
    ranged = pa.schema(
        [
            f
            for f in target
            if pa.types.is_date32(f.type)
            or pa.types.is_timestamp(f.type)
            or pa.types.is_large_string(f.type)
            or pa.types.is_string(f.type)
        ]
    )
    known: dict[str, dict[str, tuple[Any, Any]]] = {}
    pool = pa.default_memory_pool()
    for part in rows.ahead(_frames(store, export, src)):
        if not isinstance(part, _Long):
            frame, chunks, n = part
            if frame.height:
                enc.write(frame.lazy(), out, _ranges(store, key, chunks, n, ranged, known))
            del frame, part
            # a window read by core.scan (not gathered) held Arrow memory: handed
            # back to the OS, so RSS stays flat
            pool.release_unused()
            continue
        src.reading()
        group = part.pieces
        n = sum(length for _, _, length in group)
        ranges = _ranges(store, key, [cid for cid, _, _ in group], n, ranged, known)
        with ExitStack() as paths:
            lazy = pl.concat(
                [
                    pl.scan_parquet(paths.enter_context(store.local_path(key(cid))), glob=False)
                    .slice(start, length)
                    .select(cols)
                    for cid, start, length in group
                ]
            )
            if export.predicate is not None:
                lazy = lazy.filter(export.predicate.fill_null(False))
            lazy = lazy.select(cols[: export.out_count]).cast(dtypes)
            enc.write(lazy, out, ranges)


def body(store: ObjectStore, export: Export, enc: CsvEncoder, src: rows.Source) -> Iterator[bytes]:
    """A CSV/TSV export's rows: a helper thread has polars write them
    (``_write_rows``); their parts are sent ~1 MB at a time.

    Closing the iterator early (the client went away) stops the helper: its
    next write fails and polars ends the query (measured: within ~0.3 s)."""
    stop = threading.Event()
    out = _Parts(stop)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            _write_rows(store, export, enc, out, src)
        except BaseException as err:  # handed to the response, unless it is gone
            if not stop.is_set():
                failed.append(err)
        finally:
            out.finish()

    helper = threading.Thread(target=run, name="export-csv", daemon=True)
    helper.start()
    try:
        done = False
        while not done:
            part = out.queue.get()
            if part is None:
                break
            parts, size = [part], len(part)
            while size < SEND_BYTES:
                try:
                    part = out.queue.get_nowait()
                except queue.Empty:
                    break
                if part is None:
                    done = True
                    break
                parts.append(part)
                size += len(part)
            yield b"".join(parts)
            del parts, part
        if failed:
            raise failed[0]
    finally:
        stop.set()

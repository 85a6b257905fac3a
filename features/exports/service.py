"""Exports: a table of a version streamed out as csv, tsv, parquet, xlsx, ndjson
or an Arrow IPC stream, optionally gzip- or zstd-compressed.

The rows come straight from the manifest's pieces, in constant memory however
large the table, and the first read is one row group, so the first bytes
leave quickly (a few ms).

- CSV and TSV: polars' streaming engine reads the chunks' Parquet, filters
  and writes CSV on its own threads, a few pieces per query, into a bounded
  queue that the response drains a MB at a time (``_csv_body``): every core
  works, without the GIL, for less memory than reading and encoding batch
  by batch; dates and datetimes are looked up rather than formatted where
  the chunks' statistics allow (figures in docs/benchmarks.md, "Exports";
  docs/decisions/0015-csv-exports-streamed-by-polars.md).
- The other formats: each piece's chunk is read a few row groups at a time
  (``DSA_EXPORT_BATCH_ROWS`` rows, only the needed columns), filtered and
  encoded in order, the next batch read on a helper thread meanwhile.

A response that ends early (the client went away) closes the stream, which
stops its helper threads (tests/features/exports/test_service.py).

A commit never changes, so neither does its export: the ``ETag`` is the commit
id plus a digest of the normalised options (and ``EXPORT_VERSION``, bumped
whenever the bytes an export writes change). Parquet exports are also
*materialised*: written once into the object store under
``exports/<digest>`` (while the first request streams them), then served from
there with byte ranges, so Parquet readers over HTTP (polars, DuckDB) fetch
the footer and the row groups a query needs, not the file.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import queue
import re
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import blake3
import orjson
import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

from core.chunks import chunk_key
from core.config import get_settings
from core.errors import Invalid
from core.objects import Manifest, Schema, get_commit, get_manifest, get_schema
from core.schema import arrow_schema
from core.storage import ObjectStore, get_store
from features.data import service as data_service
from features.datasets import service as datasets_service
from features.exports.formats import (
    ArrowEncoder,
    Compressor,
    CsvEncoder,
    Encoder,
    NdjsonEncoder,
    ParquetEncoder,
)
from features.exports.xlsx import XlsxEncoder
from features.refs import service as refs_service

EXPORT_VERSION = "dsa.export.v2"  # v2: CSV and TSV written by polars (quoted only where needed)
FORMATS: dict[str, tuple[str, str]] = {  # format -> (file extension, media type)
    "csv": ("csv", "text/csv; charset=utf-8"),
    "tsv": ("tsv", "text/tab-separated-values; charset=utf-8"),
    "parquet": ("parquet", "application/vnd.apache.parquet"),
    "xlsx": ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    "ndjson": ("ndjson", "application/x-ndjson"),
    "arrow": ("arrows", "application/vnd.apache.arrow.stream"),
}
COMPRESSIONS = {
    "none": ("", None),
    "gzip": (".gz", "application/gzip"),
    "zstd": (".zst", "application/zstd"),
}
RAW_FORMATS = {"csv", "tsv", "xlsx"}  # where formula neutralisation applies
_FULL_ID = re.compile(r"[0-9a-f]{64}")
_FILE_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_READ_CHUNK = 1024 * 1024
CSV_QUERY_PIECES = 4  # manifest pieces per polars query (see _csv_rows)
CSV_LOOKUP_ROWS = 16_384  # a query of fewer rows formats dates itself (see CsvEncoder.frame)
CSV_PARTS = 8  # parts polars wrote (~280 KB each) not taken by the response yet
SEND_BYTES = 1024 * 1024  # a response write joins parts up to about this size
# (32 parts and 4 MB writes: ~10 MiB more peak RSS, no faster)
T = TypeVar("T")


@dataclass(frozen=True)
class Options:
    """An export's options, normalised: the same export always has the same ones."""

    table: str
    format: str
    columns: tuple[str, ...] | None
    filter: str | None
    compression: str
    raw: bool

    def params(self) -> dict[str, str]:
        """As query parameters, defaults left out."""
        p = {"table": self.table, "format": self.format}
        if self.columns is not None:
            p["columns"] = ",".join(self.columns)
        if self.filter is not None:
            p["filter"] = self.filter
        if self.compression != default_compression(self.format):
            p["compression"] = self.compression
        if self.raw:
            p["raw"] = "true"
        return p


@dataclass(frozen=True)
class Export:
    dataset: dict[str, Any]
    ref: str
    commit_id: str
    created_at: str
    options: Options
    schema: Schema
    manifest_id: str
    row_count: int
    read_columns: tuple[str, ...]  # output columns, then filter-only columns
    out_count: int  # how many of read_columns are written
    predicate: pl.Expr | None

    @property
    def pinned(self) -> bool:
        """Addressed by full commit id: the URL's content can never change."""
        return self.ref == self.commit_id

    @property
    def digest(self) -> str:
        doc = {"v": EXPORT_VERSION, "commit": self.commit_id, **self.options.params()}
        return blake3.blake3(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()

    @property
    def etag(self) -> str:
        return f'"{self.commit_id}-{self.digest[:16]}"'

    @property
    def media_type(self) -> str:
        comp = COMPRESSIONS[self.options.compression][1]
        if comp and self.options.format != "parquet":
            return comp
        return FORMATS[self.options.format][1]

    @property
    def filename(self) -> str:
        o = self.options
        ext = FORMATS[o.format][0]
        if o.format != "parquet":
            ext += COMPRESSIONS[o.compression][0]
        stem = f"{self.dataset['name']}-{o.table}-{self.commit_id[:12]}"
        return f"{_FILE_SAFE.sub('_', stem).strip('_.') or 'export'}.{ext}"

    @property
    def last_modified(self) -> str:
        when = dt.datetime.fromisoformat(self.created_at.replace("Z", "+00:00"))
        return email.utils.format_datetime(when.astimezone(dt.UTC), usegmt=True)

    @property
    def columns(self) -> list[tuple[str, str]]:
        by_name = {c.name: c for c in self.schema.columns}
        return [(n, by_name[n].type) for n in self.read_columns[: self.out_count]]

    @property
    def materialised_key(self) -> str:
        return f"exports/{self.digest}"


def default_compression(fmt: str) -> str:
    """Parquet is compressed inside (zstd) unless asked otherwise; the rest is not."""
    return "zstd" if fmt == "parquet" else "none"


def prepare(
    conn: psycopg.Connection[Any],
    user: Any,
    dataset_id: uuid.UUID,
    ref: str,
    *,
    table: str | None,
    format: str | None,
    columns: list[str] | str | None,
    filter: str | None,
    compression: str | None,
    raw: bool = False,
) -> Export:
    """Check access and options, resolve the ref; everything a stream needs
    (reading rows needs no database afterwards)."""
    dataset = datasets_service.require(conn, user, dataset_id, "read")
    fmt = (format or "csv").lower()
    if fmt not in FORMATS:
        raise Invalid(
            f"unknown export format {format!r} (one of: {', '.join(FORMATS)})",
            code="unknown_export_format",
        )
    comp = (compression or default_compression(fmt)).lower()
    if comp not in COMPRESSIONS:
        raise Invalid(
            f"unknown compression {compression!r} (one of: {', '.join(COMPRESSIONS)})",
            code="unknown_compression",
        )
    if fmt == "xlsx" and comp != "none":
        raise Invalid(
            "xlsx files are zip archives already: use compression=none",
            code="unsupported_compression",
        )
    commit_id = refs_service.resolve(conn, dataset_id, ref)
    store = get_store()
    commit = get_commit(store, commit_id)
    table, entry = data_service.table_of(commit, table, ref)
    schema = get_schema(store, entry.schema)
    names = schema.names
    picked: list[str] | None = (
        [c for c in columns.split(",") if c] if isinstance(columns, str) else columns
    ) or None
    if picked is not None:
        unknown = [c for c in picked if c not in names]
        if unknown:
            raise Invalid(
                f"unknown columns: {', '.join(unknown)}", code="unknown_column", columns=unknown
            )
        if len(set(picked)) != len(picked):
            raise Invalid("a column is named twice in columns", code="duplicate_column")
    out = picked if picked is not None else names
    predicate = None
    if filter is not None and filter.strip():
        filter = filter.strip()
        predicate = data_service.parse_filter(filter, schema)
        extra = [n for n in predicate.meta.root_names() if n not in out]
        read = tuple(out) + tuple(dict.fromkeys(extra))
    else:
        filter = None
        read = tuple(out)
    options = Options(
        table=table,
        format=fmt,
        columns=tuple(picked) if picked is not None else None,
        filter=filter,
        compression=comp,
        raw=bool(raw) and fmt in RAW_FORMATS,
    )
    return Export(
        dataset=dataset,
        ref=ref,
        commit_id=commit_id,
        created_at=commit.created_at,
        options=options,
        schema=schema,
        manifest_id=entry.manifest,
        row_count=entry.row_count,
        read_columns=read,
        out_count=len(out),
        predicate=predicate,
    )


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Read:
    """One unit of work: rows [lo, hi) of row groups ``groups`` of a chunk."""

    cid: str
    meta: pq.FileMetaData
    groups: list[int]
    lo: int
    hi: int


def _reads(store: ObjectStore, export: Export) -> Iterator[_Read]:
    """The export's rows as reads of whole row groups, in order: the first is
    one row group (the first bytes leave quickly), the others up to
    ``DSA_EXPORT_BATCH_ROWS`` rows."""
    manifest: Manifest = get_manifest(store, export.manifest_id)
    budget = get_settings().row_group_rows
    for cid, start, length in manifest.slices(0, export.row_count):
        meta = pq.ParquetFile(store.open_arrow(chunk_key(cid))).metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        starts = [0] * len(sizes)
        for i in range(1, len(sizes)):
            starts[i] = starts[i - 1] + sizes[i - 1]
        end = start + length
        groups = [i for i in range(len(sizes)) if starts[i] < end and starts[i] + sizes[i] > start]
        k = 0
        while k < len(groups):
            take: list[int] = []
            rows = 0
            while k < len(groups) and (not take or rows + sizes[groups[k]] <= budget):
                take.append(groups[k])
                rows += sizes[groups[k]]
                k += 1
            budget = get_settings().export_batch_rows
            first = starts[take[0]]
            lo = max(start, first) - first
            hi = min(end, first + rows) - first
            yield _Read(cid, meta, take, lo, hi)


def _load(store: ObjectStore, export: Export, read: _Read, target: pa.Schema) -> pa.Table:
    """A read's rows, filtered and projected to the export's columns and types.
    Each read opens the chunk itself: a ``ParquetFile`` is not safe to share
    between threads."""
    cols = list(export.read_columns)
    pf = pq.ParquetFile(store.open_arrow(chunk_key(read.cid)), metadata=read.meta)
    t = pf.read_row_groups(read.groups, columns=cols, use_threads=True)
    t = t.slice(read.lo, read.hi - read.lo)
    if export.predicate is not None and t.num_rows:
        frame = pl.from_arrow(t)
        assert isinstance(frame, pl.DataFrame)
        mask = frame.select(export.predicate.fill_null(False)).to_series().to_arrow()
        t = t.filter(mask)
    return t.select(cols[: export.out_count]).cast(target)


def _target(export: Export) -> pa.Schema:
    by_name = {c.name: c for c in export.schema.columns}
    return arrow_schema([by_name[n] for n in export.read_columns[: export.out_count]])


def batches(export: Export) -> Iterator[pa.RecordBatch]:
    """The export's rows in order, batch by batch, filtered and projected."""
    store = get_store()
    target = _target(export)
    for read in _reads(store, export):
        yield from _load(store, export, read, target).to_batches()


def _ahead(work: Callable[[_Read], T], reads: Iterator[_Read]) -> Iterator[T]:
    """``work(read)`` of every read, in order, the next one computed on a
    helper thread meanwhile (reading overlaps encoding).

    Closing the iterator early (the client went away: Starlette drops the
    response's iterator) cancels what has not started and lets the thread end
    after the read it is on, without waiting: it may run on the event loop."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="export-read")
    pending: deque[Future[T]] = deque()
    try:
        for read in reads:
            pending.append(pool.submit(work, read))
            if len(pending) > 1:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=False, cancel_futures=True)


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


def _group_ranges(
    store: ObjectStore,
    group: list[tuple[str, int, int]],
    wanted: pa.Schema,
    known: dict[str, dict[str, tuple[Any, Any]]],
) -> dict[str, tuple[Any, Any]]:
    """The value ranges of ``wanted``'s columns over a query's pieces, from
    their chunks' statistics (read once per chunk into ``known``); none for a
    query under ``CSV_LOOKUP_ROWS`` rows, where looking dates up costs more
    than it saves (measured on ~15-row pieces: 6,800 rows/s with, 7,800 without)."""
    if sum(length for _, _, length in group) < CSV_LOOKUP_ROWS:
        return {}
    for cid in {cid for cid, _, _ in group} - known.keys():
        meta = pq.ParquetFile(store.open_arrow(chunk_key(cid))).metadata
        known[cid] = _chunk_ranges(meta, wanted)
    out: dict[str, tuple[Any, Any]] = {}
    for name in wanted.names:
        spans = [known[cid].get(name) for cid, _, _ in group]
        if all(spans):
            out[name] = (min(sp[0] for sp in spans), max(sp[1] for sp in spans))  # type: ignore[index]
    return out


def _csv_rows(store: ObjectStore, export: Export, enc: CsvEncoder, out: _Parts) -> None:
    """A CSV/TSV export's rows, written to ``out`` by polars' streaming engine
    straight from the chunks' Parquet (reading, filtering and writing on its
    threads, releasing the GIL): first one row group's worth, so the first
    rows leave within a few ms, then a few pieces per query. Past ~8 large
    pieces a query's memory grows with each piece it concatenates (measured
    with 131,072-row pieces, 2 threads: peak RSS +70 MiB for 2 to 8 pieces,
    +100 for 9, +180 for 12, +255 for 16), while a query costs only ~10 ms
    to start. Each query gets the value ranges of its chunks' date, datetime
    and text columns (``CsvEncoder.frame``)."""
    manifest = get_manifest(store, export.manifest_id)
    first = min(get_settings().row_group_rows, export.row_count)
    groups = [manifest.slices(0, first)] if first else []
    rest = manifest.slices(first, export.row_count - first)
    groups += [rest[i : i + CSV_QUERY_PIECES] for i in range(0, len(rest), CSV_QUERY_PIECES)]
    cols = list(export.read_columns)
    target = _target(export)
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
    for group in groups:
        ranges = _group_ranges(store, group, ranged, known)
        with ExitStack() as paths:
            rows = pl.concat(
                [
                    pl.scan_parquet(paths.enter_context(store.local_path(chunk_key(cid))))
                    .slice(start, length)
                    .select(cols)
                    for cid, start, length in group
                ]
            )
            if export.predicate is not None:
                rows = rows.filter(export.predicate.fill_null(False))
            rows = rows.select(cols[: export.out_count]).cast(dtypes)
            enc.write(rows, out, ranges)


def _csv_body(store: ObjectStore, export: Export, enc: CsvEncoder) -> Iterator[bytes]:
    """A CSV/TSV export's rows: a helper thread has polars write them
    (``_csv_rows``); their parts are sent ~1 MB at a time.

    Closing the iterator early (the client went away) stops the helper: its
    next write fails and polars ends the query (measured: within ~0.3 s)."""
    stop = threading.Event()
    out = _Parts(stop)
    failed: list[BaseException] = []

    def run() -> None:
        try:
            _csv_rows(store, export, enc, out)
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


def encoder(export: Export) -> Encoder:
    o = export.options
    by_name = {c.name: c for c in export.schema.columns}
    cols = [by_name[n] for n, _ in export.columns]
    schema = arrow_schema(cols)
    kinds = [c.type for c in cols]
    if o.format == "csv":
        return CsvEncoder(schema, raw=o.raw)
    if o.format == "tsv":
        return CsvEncoder(schema, delimiter="\t", raw=o.raw)
    if o.format == "ndjson":
        return NdjsonEncoder(schema, kinds)
    if o.format == "arrow":
        return ArrowEncoder(schema)
    if o.format == "xlsx":
        return XlsxEncoder(schema, kinds, sheet=o.table, raw=o.raw)
    codec = "none" if o.compression == "none" else o.compression
    return ParquetEncoder(schema, codec=codec)


def _encoded(store: ObjectStore, export: Export, enc: Encoder) -> Iterator[bytes]:
    """The other formats' rows: each batch read (and filtered) on a helper
    thread while the one before is encoded here, in order."""
    target = _target(export)
    pool = pa.default_memory_pool()
    for t in _ahead(lambda read: _load(store, export, read, target), _reads(store, export)):
        if t.num_rows == 0:
            continue
        for batch in t.to_batches():
            yield enc.encode(batch)
        del t
        pool.release_unused()  # hand freed batches back to the OS: RSS stays flat


def stream(export: Export) -> Iterator[bytes]:
    """The export's bytes, a batch at a time."""
    store = get_store()
    enc = encoder(export)
    comp = Compressor("none" if export.options.format == "parquet" else export.options.compression)
    head = comp.compress(enc.begin())
    if head:
        yield head
    if isinstance(enc, CsvEncoder):
        body = _csv_body(store, export, enc)
    else:
        body = _encoded(store, export, enc)
    for data in body:
        out = comp.compress(data)
        del data
        if out:
            yield out
    tail = comp.compress(enc.end()) + comp.flush()
    if tail:
        yield tail


# --------------------------------------------------------------------------- materialised Parquet


def materialised_size(export: Export) -> int | None:
    """The stored Parquet export's size, or None when not stored yet."""
    store = get_store()
    if not store.exists(export.materialised_key):
        return None
    with store.open(export.materialised_key) as f:
        return f.seek(0, 2)


def _tmp_path() -> Path:
    tmp = get_settings().tmp_dir / "exports"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp / f"export-{uuid.uuid4().hex}.parquet"


def stream_and_store(export: Export) -> Iterator[bytes]:
    """Stream the Parquet export while writing it to a temporary file, which
    becomes the stored object once complete (a cut-off request leaves nothing)."""
    tmp = _tmp_path()
    try:
        with open(tmp, "wb") as f:
            for part in stream(export):
                f.write(part)
                yield part
        get_store().put_file(export.materialised_key, tmp, move=True)
    finally:
        tmp.unlink(missing_ok=True)


def materialise(export: Export) -> int:
    """Store the Parquet export (unless stored already); its size."""
    size = materialised_size(export)
    if size is None:
        for _ in stream_and_store(export):
            pass
        size = materialised_size(export)
        assert size is not None
    return size


def read_range(export: Export, start: int, end: int) -> Iterator[bytes]:
    """Bytes [start, end] (inclusive) of the stored Parquet export."""
    f = get_store().open(export.materialised_key)
    try:
        f.seek(start)
        left = end - start + 1
        while left > 0:
            data = f.read(min(_READ_CHUNK, left))
            if not data:
                return
            left -= len(data)
            yield data
    finally:
        f.close()

"""Exports: a table of a version streamed out as csv, tsv, parquet, xlsx, ndjson
or an Arrow IPC stream, optionally gzip- or zstd-compressed.

The rows are read window by window in table order (``rows.windows``: each
window's row groups decoded once, chunk by chunk, whatever the manifest's
layout, ``core.scan``), in constant memory however large the table; the
first window is one row group, so the first bytes leave quickly (a few ms).

- CSV and TSV (``csv_stream``): polars' CSV writer writes each window on its
  own threads into a bounded queue that the response drains a MB at a time;
  dates and datetimes are looked up rather than formatted where the chunks'
  statistics allow (figures in docs/benchmarks.md, "Exports";
  docs/decisions/0015-csv-exports-streamed-by-polars.md).
- The other formats: each window is filtered and encoded in order, the next
  one read on a helper thread meanwhile. Parquet row groups hold
  ``formats.PARQUET_ROW_GROUP_ROWS`` rows (the last fewer), so the same rows
  make the same file whatever the version's layout.

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

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import structlog

from core import db
from core.config import get_settings
from core.errors import ObjectNotFound, TooManyRequests
from core.lru import LRU
from core.objects import get_commit, get_schema
from core.schema import arrow_schema
from core.storage import ObjectStore, get_store
from features.data import service as data_service
from features.data.errors import UnknownColumn
from features.exports import csv_stream, links, rows
from features.exports.errors import (
    BadSignature,
    DuplicateColumn,
    LinkExpired,
    UnknownCompression,
    UnknownExportFormat,
    UnsupportedCompression,
)
from features.exports.formats import (
    ArrowEncoder,
    Compressor,
    CsvEncoder,
    Encoder,
    NdjsonEncoder,
    ParquetEncoder,
)
from features.exports.spec import (
    COMPRESSIONS,
    EXPORT_VERSION,
    FORMATS,
    RAW_FORMATS,
    Export,
    Options,
    default_compression,
)
from features.exports.xlsx import XlsxEncoder
from features.refs import service as refs_service

__all__ = ["EXPORT_VERSION", "Export", "Options", "default_compression", "prepare", "stream"]
_READ_CHUNK = 1024 * 1024


log = structlog.get_logger(__name__)
Q = db.Queries(__file__)


def prepare(
    conn: psycopg.Connection[Any],
    dataset: dict[str, Any],
    ref: str,
    *,
    table: str | None,
    format: str | None,
    columns: list[str] | str | None,
    filter: str | None,
    compression: str | None,
    raw: bool = False,
) -> Export:
    """Check options, resolve the ref; everything a stream needs (reading rows
    needs no database afterwards). ``dataset`` is the row ``datasets.require``
    gave the caller for the read role."""
    fmt, comp = _format_and_compression(format, compression)
    commit_id = refs_service.resolve(conn, dataset["id"], ref)
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
            raise UnknownColumn(f"unknown columns: {', '.join(unknown)}", columns=unknown)
        if len(set(picked)) != len(picked):
            raise DuplicateColumn("a column is named twice in columns")
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
        schema_id=entry.schema,
    )


def _format_and_compression(format: str | None, compression: str | None) -> tuple[str, str]:
    """The export's format and compression, checked (422 for an unknown one)."""
    fmt = (format or "csv").lower()
    if fmt not in FORMATS:
        raise UnknownExportFormat(
            f"unknown export format {format!r} (one of: {', '.join(FORMATS)})"
        )
    comp = (compression or default_compression(fmt)).lower()
    if comp not in COMPRESSIONS:
        raise UnknownCompression(
            f"unknown compression {compression!r} (one of: {', '.join(COMPRESSIONS)})"
        )
    if fmt == "xlsx" and comp != "none":
        raise UnsupportedCompression("xlsx files are zip archives already: use compression=none")
    return fmt, comp


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


def _encoded(store: ObjectStore, export: Export, enc: Encoder, src: rows.Source) -> Iterator[bytes]:
    """The other formats' rows: each window read (and filtered) on a helper
    thread while the one before is encoded here, in order."""
    pool = pa.default_memory_pool()
    for _, t in rows.ahead(rows.windows(store, export, src)):
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
    src = rows.source(store, export)  # the version's chunks, or its read copy
    if isinstance(enc, CsvEncoder):
        body = csv_stream.body(store, export, enc, src)
    else:
        body = _encoded(store, export, enc, src)
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
    """The stored Parquet export's size, or None when not stored yet (its
    use is noted, at most once a minute a process: garbage collection keeps
    the most recently used within ``DSA_EXPORT_CACHE_BYTES``)."""
    try:
        with get_store().open(export.materialised_key) as f:
            size = f.seek(0, 2)
    except ObjectNotFound:
        return None
    _touch(export.materialised_key)
    return size


_touched: LRU[str, float] = LRU(max_items=10_000)
TOUCH_EVERY_S = 60.0


def _touch(key: str) -> None:
    last = _touched.get(key)
    now = time.monotonic()
    if last is not None and now - last < TOUCH_EVERY_S:
        return
    _touched.put(key, now)
    try:
        with db.read() as conn:
            conn.execute(Q.touch_stored, {"key": key})
    except Exception:  # a read never fails for want of bookkeeping
        log.warning("could not note a stored export's use", key=key, exc_info=True)


def stored_exports(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every stored Parquet export (key, dataset_id, commit_id, bytes,
    used_at), least recently used first: what garbage collection weighs."""
    return conn.execute(Q.stored).fetchall()


def forget_stored(conn: psycopg.Connection[Any], key: str) -> None:
    """Drop a stored export's record (garbage collection deletes its object)."""
    conn.execute(Q.forget_stored, {"key": key})
    _touched.pop(key)


def redirect_url(export: Export) -> str | None:
    """A short-lived URL of the bucket that serves the stored Parquet export
    itself (``DSA_EXPORT_REDIRECT``, an ``s3://`` store), or None: the API
    serves it. The caller has checked the reader may read it."""
    settings = get_settings()
    if not settings.export_redirect:
        return None
    try:
        return get_store().presign(
            export.materialised_key,
            seconds=settings.export_redirect_seconds,
            filename=export.filename,
            media_type=export.media_type,
        )
    except Exception:  # no credentials to sign with, say: the API serves it
        log.warning("could not presign a stored export", key=export.materialised_key)
        return None


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
        with db.transaction() as conn:  # recorded before it is stored
            conn.execute(
                Q.record_stored,
                {
                    "key": export.materialised_key,
                    "dataset_id": export.dataset["id"],
                    "commit_id": export.commit_id,
                    "bytes": tmp.stat().st_size,
                },
            )
        get_store().put_file(export.materialised_key, tmp, move=True)
    finally:
        tmp.unlink(missing_ok=True)


def link_signer(path: str, items: list[tuple[str, str]]) -> uuid.UUID | None:
    """The user whose valid, unexpired signed link ``path`` and ``items``
    (the query) are, None for anything else; no database (the rate limits
    count a link's requests as its signer's)."""
    try:
        return links.verify(path, items)
    except (BadSignature, LinkExpired):
        return None


_building: dict[str, threading.Lock] = {}
_building_guard = threading.Lock()
_builds: threading.BoundedSemaphore | None = None


def _build_slot() -> threading.BoundedSemaphore:
    global _builds
    with _building_guard:
        if _builds is None:
            _builds = threading.BoundedSemaphore(get_settings().effective_expensive_per_user)
        return _builds


def materialise(export: Export) -> int:
    """Store the Parquet export (unless stored already); its size.

    A HEAD or a ranged read is light work for the rate limits (bytes of a
    stored file: polars reads a link with many at once), except the first
    one, which stores the file. So concurrent first reads of one export
    wait for one build, and a process builds at most
    ``DSA_EXPENSIVE_PER_USER`` exports this way at a time (429 past it)."""
    size = materialised_size(export)
    if size is not None:
        return size
    key = export.materialised_key
    with _building_guard:
        lock = _building.setdefault(key, threading.Lock())
    with lock:
        size = materialised_size(export)  # built by the request we waited for
        if size is None:
            slots = _build_slot()
            if not slots.acquire(blocking=False):
                raise TooManyRequests(
                    "the server is storing other Parquet exports; try again shortly",
                    retry_after=1,
                )
            try:
                for _ in stream_and_store(export):
                    pass
            finally:
                slots.release()
            size = materialised_size(export)
            assert size is not None
    with _building_guard:
        if _building.get(key) is lock and not lock.locked():
            del _building[key]
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

"""An export's rows: the version's table read window by window, chunk by
chunk (``core.scan``), filtered and projected to the export's columns and
types, the next window read on a helper thread while one is encoded.

Windows hold ``DSA_EXPORT_BATCH_ROWS`` rows (65,536) whatever the manifest's
layout: a freshly imported table of a few long pieces and a version of
300,000 few-row pieces are read with the same work per row (each needed
row group decoded once). The first window is one row group's worth
(``DSA_ROW_GROUP_ROWS``), so the first bytes of a stream leave within a few ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import polars as pl
import pyarrow as pa

from core import db, layouts
from core.chunks import chunk_key
from core.config import get_settings
from core.objects import Manifest, get_manifest
from core.scan import Scan, Window
from core.schema import arrow_schema
from core.storage import ObjectStore, get_store
from features.exports.spec import Export
from features.layouts import service as layouts_service

T = TypeVar("T")


def target(export: Export) -> pa.Schema:
    """The Arrow schema of what the export writes (its output columns)."""
    by_name = {c.name: c for c in export.schema.columns}
    return arrow_schema([by_name[n] for n in export.read_columns[: export.out_count]])


@dataclass
class Source:
    """Where an export's rows are read from: the version's manifest and its
    chunks, or its read copy (``copy``: parts read through a manifest of one
    piece a part, ``core.layouts``)."""

    manifest: Manifest
    key: Callable[[str], str]
    copy: layouts.Copy | None = None
    touched: float = field(default_factory=time.monotonic)

    def reading(self) -> None:
        """A read of the copy goes on: say so (at most once a minute), so the
        copy is not evicted under a long download."""
        if self.copy is not None and time.monotonic() - self.touched > 60:
            self.touched = time.monotonic()
            layouts_service.touch(self.copy)


def source(store: ObjectStore, export: Export) -> Source:
    """The version's read copy if it has one (found without decoding the
    version's manifest), else its chunks; a whole read of a fragmented
    version without a copy asks for one. No database connection is held
    while a manifest is decoded (~50 MB and a second for 1M pieces)."""
    copy = None
    if layouts_service.enabled():
        with db.read() as conn:
            copy = layouts_service.ready(conn, store, export.manifest_id)
    if copy is None:
        manifest = get_manifest(store, export.manifest_id)
        if not layouts_service.applies(manifest):
            return Source(manifest, chunk_key)
        with db.read() as conn:
            copy = layouts_service.for_reading(conn, store, manifest, export.schema_id)
        if copy is None:
            return Source(manifest, chunk_key)
    one, key = copy.source()
    return Source(one, key, copy)


def windows(
    store: ObjectStore,
    export: Export,
    src: Source,
    *,
    offset: int = 0,
    limit: int | None = None,
    first_rows: int | None = None,
) -> Iterator[tuple[Window, pa.Table]]:
    """The export's rows in order (table rows ``[offset, offset + limit)``), a
    window at a time: each window's rows filtered and projected to
    ``target(export)``. The first window is ``first_rows`` rows (default:
    one row group's worth)."""
    settings = get_settings()
    by_name = {c.name: c for c in export.schema.columns}
    read = arrow_schema([by_name[n] for n in export.read_columns])
    scan = Scan(
        store,
        src.manifest,
        export.read_columns,
        schema=pa.schema([f.with_nullable(True) for f in read]),
        offset=offset,
        limit=limit,
        batch_rows=settings.export_batch_rows,
        first_rows=first_rows or min(settings.row_group_rows, settings.export_batch_rows),
        key=src.key,
    )
    out = target(export)
    for w in scan.windows():
        src.reading()
        yield w, _filtered(export, scan.read(w), out)


def _filtered(export: Export, t: pa.Table, out: pa.Schema) -> pa.Table:
    if export.predicate is not None and t.num_rows:
        frame = pl.from_arrow(t)
        assert isinstance(frame, pl.DataFrame)
        mask = frame.select(export.predicate.fill_null(False)).to_series().to_arrow()
        t = t.filter(mask)
    return t.select(list(export.read_columns[: export.out_count])).cast(out)


def batches(export: Export) -> Iterator[pa.RecordBatch]:
    """The export's rows in order, batch by batch, filtered and projected."""
    store = get_store()
    for _, t in windows(store, export, source(store, export)):
        yield from t.to_batches()


_DONE = object()


def ahead(items: Iterator[T]) -> Iterator[T]:
    """``items`` in order, the next one made on a helper thread meanwhile
    (reading overlaps encoding). One thread advances ``items`` at a time.

    Closing the iterator early (the client went away: Starlette drops the
    response's iterator) lets the helper end after the item it is on,
    without waiting for it: this may run on the event loop."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="export-read")
    pending: Future[object] | None = None
    try:
        pending = pool.submit(next, items, _DONE)
        while True:
            item = pending.result()
            if item is _DONE:
                return
            pending = pool.submit(next, items, _DONE)
            yield item  # type: ignore[misc]
    finally:
        if pending is not None:
            pending.cancel()
        pool.shutdown(wait=False, cancel_futures=True)

"""Typed batches into stored chunks: the writer every import path ends in."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa

from core.chunks import text_extremes, write_chunk
from core.config import get_settings
from core.hashing import row_hashes
from core.objects import Piece
from core.schema import Column, arrow_type
from features.imports.csv_types import convert
from features.stats import service as stats_service


class ChunkWriter:
    """Cuts typed batches into chunks of ``chunk_rows`` rows and stores each on a
    small thread pool, so hashing and Parquet encoding (both release the GIL)
    overlap with parsing. Each batch is hashed on the pool as it arrives, so a
    chunk's encoding does not wait for its hashing to start (the last chunk of
    a file then costs only its encoding). At most ``pool size + 1`` chunks are
    in flight, which bounds memory.

    Each stored chunk's statistics' state (``stats.service.chunk_written``)
    is computed on a thread of its own, off the path of parsing and writing;
    at most ``STATS_BEHIND`` + 1 chunks wait for it (their rows held, beside
    those in flight)."""

    STATS_BEHIND = 2

    def __init__(self, store: Any, columns: list[Column], work: Path, pool: ThreadPoolExecutor):
        self.store = store
        self.columns = columns
        self.work = work
        self.pool = pool
        self.chunk_rows = get_settings().chunk_rows
        self.pending: list[pa.RecordBatch] = []
        self.hashing: list[Future[bytes]] = []  # row hashes of the pending batches
        self.pending_rows = 0
        self.futures: list[Future[Stored]] = []
        self.stats: list[Future[None]] = []
        self._stats_pool: ThreadPoolExecutor | None = None
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        while batch.num_rows:
            take = min(batch.num_rows, self.chunk_rows - self.pending_rows)
            part = batch.slice(0, take)
            self.pending.append(part)
            self.hashing.append(self.pool.submit(row_hashes, part, self.columns))
            self.pending_rows += take
            batch = batch.slice(take)
            if self.pending_rows >= self.chunk_rows:
                self._flush()

    def _flush(self) -> None:
        if not self.pending_rows:
            return
        table = pa.Table.from_batches(self.pending)
        hashing = self.hashing
        self.pending, self.hashing, self.pending_rows = [], [], 0
        inflight = [f for f in self.futures if not f.done()]
        if len(inflight) > self.pool._max_workers:  # noqa: SLF001 - back-pressure
            inflight[0].result()
        # the hash tasks were queued first (FIFO): waiting on them cannot deadlock
        written = self.pool.submit(
            _write_hashed, self.store, table, self.columns, self.work, hashing
        )
        self.futures.append(written)
        self.rows += table.num_rows
        self._state_of(written, table)

    def _state_of(self, written: Future[Stored], table: pa.Table) -> None:
        if not get_settings().chunk_stats:
            return
        if self._stats_pool is None:
            self._stats_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chunk-stats")
        behind = [f for f in self.stats if not f.done()]
        if len(behind) > self.STATS_BEHIND:
            behind[0].result()

        def state() -> None:
            cid, _, extremes = written.result()  # a failed write fails the import elsewhere
            stats_service.chunk_written(self.store, cid, table, self.columns, extremes)

        self.stats.append(self._stats_pool.submit(state))

    def finish(self) -> list[Piece]:
        written = False
        try:
            self._flush()
            pieces = [Piece(cid, 0, n) for cid, n, _ in (f.result() for f in self.futures)]
            written = True
        finally:  # a failed write: the queued states are dropped, not made
            self._close_stats(wait=written)
        return pieces

    def abandon(self) -> None:
        for f in self.futures:
            f.cancel()
        running: list[Future[Any]] = [*self.futures, *self.hashing]
        for f in running:
            if not f.cancel():
                f.exception()  # wait; its chunk is merely unreferenced
        self._close_stats(wait=False)
        self.futures, self.hashing, self.pending, self.pending_rows = [], [], [], 0

    def _close_stats(self, *, wait: bool) -> None:
        """The states' thread ended: after the last state (``wait``), or with
        the queued ones dropped (an abandoned write: a state is a cache)."""
        if self._stats_pool is not None:
            self._stats_pool.shutdown(wait=True, cancel_futures=not wait)
            self._stats_pool = None
        for f in self.stats:
            if not f.cancelled():
                f.exception()  # chunk_written never raises; a failed write raised above
        self.stats = []


Stored = tuple[str, int, dict[str, tuple[Any, Any]] | None]
"""A stored chunk: its id, its rows, and its text columns' extremes from the
written file's statistics (None: stored before, nothing written)."""


def _write_hashed(
    store: Any, table: pa.Table, columns: list[Column], work: Path, hashing: list[Future[bytes]]
) -> Stored:
    hashes = b"".join(f.result() for f in hashing)
    extremes: list[dict[str, tuple[Any, Any]]] = []
    cid, n = write_chunk(
        store,
        table,
        columns,
        tmp_dir=work,
        hashes=hashes,
        on_footer=lambda footer: extremes.append(text_extremes(footer, columns)),
    )
    return cid, n, extremes[0] if extremes else None


def columns_of(names: list[str], types: list[str], order: list[str] | None = None) -> list[Column]:
    cols = [Column(n, t) for n, t in zip(names, types, strict=True)]
    if order is None:
        return cols
    by_name = {c.name: c for c in cols}
    return [by_name[n] for n in order]


def assemble(
    text: pa.RecordBatch,
    typed: list[pa.Array | None],
    types: list[str],
    order: list[str] | None = None,
) -> pa.RecordBatch:
    arrays = []
    for i, kind in enumerate(types):
        arr = typed[i]
        if arr is None or arr.type != arrow_type(kind):
            arr = convert(text.column(i), kind)
            assert arr is not None, "final types fit every value by construction"
        arrays.append(arr)
    batch = pa.RecordBatch.from_arrays(arrays, names=text.schema.names)
    return batch.select(order) if order is not None else batch

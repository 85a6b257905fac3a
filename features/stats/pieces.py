"""A version's statistics from its pieces: chunk states merged, the rest read.

A version of more than ``SAMPLE_ROWS`` rows whose pieces are mostly whole
chunks (a fresh import, a re-upload that appended rows or replaced whole
runs, most merges) merges the stored states of those chunks (``state``;
written by the import that wrote the chunk, or here at the first need) and
reads only the rows of the pieces that cut a chunk. Any other version (a
small one, where reading is cheap and the figures are exact; one whose
pieces are mostly fragments of chunks, where there is nothing to reuse) is
read in full as before (``compute``), from its read copy where it has one.
"""

from __future__ import annotations

import contextvars
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import structlog

from core import deadline
from core.chunks import chunk_key, row_group_starts
from core.errors import ObjectNotFound
from core.objects import Manifest, Piece, TableEntry, get_manifest, get_schema
from core.scan import Scan
from core.schema import Column, arrow_schema
from core.storage import ObjectStore
from features.stats import state
from features.stats.compute import SAMPLE_ROWS, statistics

log = structlog.get_logger(__name__)
_U64 = 2**64
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stats-load")


def _fresh_pool() -> None:
    """A forked child gets its own pool (see ``core.scan``)."""
    global _POOL
    _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="stats-load")


os.register_at_fork(after_in_child=_fresh_pool)


def state_key(cid: str) -> str:
    return f"chunkstats/{cid}"


def of_version(
    store: ObjectStore, entry: TableEntry, source: tuple[Manifest, Callable[[str], str]]
) -> dict[str, Any]:
    """A table version's statistics (``compute``'s form); ``source``: where
    to read all its rows if it is read in full (``data.service.source``)."""
    columns = list(get_schema(store, entry.schema).columns)
    manifest = get_manifest(store, entry.manifest)
    merged = _merged(store, entry, manifest, columns)
    return merged if merged is not None else _read_all(store, columns, *source)


def _merged(
    store: ObjectStore, entry: TableEntry, manifest: Manifest, columns: list[Column]
) -> dict[str, Any] | None:
    """The statistics merged from the whole chunks' states and the other
    pieces' rows; None where the version is read in full instead (at most
    ``SAMPLE_ROWS`` rows, or less than half of them in whole chunks). The
    states are folded in as they are loaded (``state.Merger``): memory is
    the sample's and the columns', whatever the number of chunks."""
    rows = manifest.row_count
    cols = manifest.columns
    first = cols.start == 0  # a piece can be a whole chunk only if it starts it
    if rows <= SAMPLE_ROWS or int(cols.length[first].sum()) * 2 < rows:
        return None
    starting: dict[int, list[int]] = {}  # chunk number -> the pieces that start it
    for i in np.flatnonzero(first).tolist():
        starting.setdefault(int(cols.chunk[i]), []).append(i)
    # loaded on two threads (decoding releases the GIL), each under the caller's deadline
    contexts = [contextvars.copy_context() for _ in starting]
    loaded = _POOL.map(
        lambda c, ctx: ctx.run(chunk_state, store, cols.chunks[c], columns), starting, contexts
    )
    merger = state.Merger(columns, _U64 * SAMPLE_ROWS // rows)
    whole = np.zeros(len(first), dtype=bool)
    for c, made in zip(starting, loaded, strict=True):
        uses = [i for i in starting[c] if cols.length[i] == made.rows]
        if uses:
            whole[uses] = True
            merger.add(made, times=len(uses))
    if int(cols.length[whole].sum()) * 2 < rows:
        return None
    rest = Manifest(tuple(p for p, w in zip(manifest.pieces, whole, strict=True) if not w))
    if rest.pieces:
        seed = state.chunk_seed(entry.manifest)
        keys = lambda at, n: state.keys(seed, at, n)  # noqa: E731
        merger.add(state.of_rows(columns, _windows(store, rest, columns), keys, merger.bound))
    log.info(
        "statistics merged",
        manifest=entry.manifest,
        chunk_states=len(starting),
        whole_pieces=int(whole.sum()),
        rows_read=rest.row_count,
    )
    return state.result(merger.state())


def chunk_state(store: ObjectStore, cid: str, columns: list[Column]) -> state.State:
    """A chunk's stored state, or its state computed from its rows now (and
    stored: a chunk written before states were, or whose state is damaged or
    made by another polars)."""
    try:
        got = state.load(store.get(state_key(cid)), columns, cid)
    except ObjectNotFound:
        got = None
    if got is not None:
        return got
    rows = int(row_group_starts(store, chunk_key(cid))[0][-1])
    table = pa.concat_tables(_windows(store, Manifest((Piece(cid, 0, rows),)), columns))
    made = state.chunk_state(cid, table, columns)
    keep(store, cid, made)
    return made


def keep(store: ObjectStore, cid: str, made: state.State) -> None:
    """Store a chunk's state; one that cannot be stored is logged (it is made
    again at the next need)."""
    try:
        store.put(state_key(cid), state.dump(made, cid))
    except Exception:
        log.warning("could not store a chunk's statistics", chunk=cid, exc_info=True)


def _windows(
    store: ObjectStore,
    manifest: Manifest,
    columns: list[Column],
    key: Callable[[str], str] = chunk_key,
) -> Iterator[pa.Table]:
    """The rows of ``manifest`` window by window (from ``key``'s objects: a
    read copy's parts, or chunks), under the caller's deadline."""
    read = pa.schema([f.with_nullable(True) for f in arrow_schema(columns)])
    for t in Scan(store, manifest, [c.name for c in columns], schema=read, key=key):
        deadline.check()
        yield t


def _read_all(
    store: ObjectStore, columns: list[Column], manifest: Manifest, key: Callable[[str], str]
) -> dict[str, Any]:
    return statistics(columns, manifest.row_count, _windows(store, manifest, columns, key))

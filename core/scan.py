"""Reading a table version's rows in order, chunk by chunk: the scan every
path that walks a whole table goes through (exports of every format, the
stored Parquet export; statistics and fsck later).

A manifest is a piece table: ``(chunk, start, length)`` runs in table order.
A version made by re-uploads, merges or upserts holds tens of thousands of
short pieces (~35,000 after one re-upload of 1M rows with 1 % edited,
~300,000 after ten), each a few rows of one of a few chunks. Reading it piece
by piece decodes a 2,048-row row group for every few-row piece: 10–340×
slower than the same rows freshly imported (issue 11).

``scan`` reads by chunk instead. The table is cut into **windows** of
``batch_rows`` table rows (the first may be shorter: ``first_rows``, so a
stream's first bytes leave quickly). For each window it

1. finds the pieces in it (binary search over their table positions);
2. for each chunk they use, the row groups holding their rows, and decodes
   each of those once (a run of adjacent groups in one call, on Arrow's
   threads), keeping the window's groups for the next window: the pieces
   of one chunk use its rows in ascending order wherever versions came from
   re-uploads, so a group that straddles two windows is decoded once;
3. takes the rows in table order: zero-copy slices when the window is a few
   long pieces (a fresh import), one ``take`` over the decoded groups when
   it is many short ones.

Every window is one table of exactly ``batch_rows`` rows (the first and last
aside), whatever the piece count, so what is encoded from it (an export's
batches, a Parquet file's row groups) does not depend on the layout. Work
and memory grow with the rows read, not with the pieces: a window decodes at
most ``MAX_WINDOW_GROUPS`` row groups (a window whose pieces would need more,
rows gathered from all over its chunks, is cut shorter), and holds only them.

The figures (the bench table as imported, and after ten re-uploads: 294,000
pieces in 18 chunks, where reading piece by piece took minutes) are in
docs/benchmarks.md, "Fragmented versions".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.chunks import chunk_key, opened, row_group_starts, will_read_groups
from core.objects import Manifest, by_chunk
from core.storage import ObjectStore

BATCH_ROWS = 65_536  # default rows a window (see DSA_EXPORT_BATCH_ROWS for exports)
MAX_WINDOW_GROUPS = 128  # row groups one window may decode (~262,000 rows of 2,048)
SLICE_MAX_PIECES = 16  # a window of at most this many pieces is sliced, not taken
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="scan-take")


def _fresh_pool() -> None:
    """A forked child has none of its parent's threads, but an executor that
    had started some believes it still has them and would queue work no
    thread runs: the child gets its own (a worker that scanned, to score
    quality rules, then forks the statistics' or an import's child)."""
    global _POOL
    _POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="scan-take")


os.register_at_fork(after_in_child=_fresh_pool)


@dataclass
class Window:
    """Table rows ``[lo, hi)``: the pieces holding them, clipped to the window
    (``chunk`` numbers index the manifest's ``chunks``), and once planned
    (``Scan.plan``), for each chunk: its pieces' indices, the row group each
    starts in, and the row groups they need."""

    lo: int
    hi: int
    chunk: np.ndarray
    start: np.ndarray
    length: np.ndarray
    groups: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    @property
    def rows(self) -> int:
        return self.hi - self.lo

    def chunk_numbers(self) -> list[int]:
        return np.unique(self.chunk).tolist()  # type: ignore[no-any-return]


def windows(
    manifest: Manifest,
    *,
    offset: int = 0,
    limit: int | None = None,
    batch_rows: int = BATCH_ROWS,
    first_rows: int | None = None,
) -> Iterator[Window]:
    """The windows covering table rows ``[offset, offset + limit)``: the first of
    ``first_rows`` rows (default ``batch_rows``), the others ``batch_rows``."""
    cols = manifest.columns
    total = int(cols.pos[-1] + cols.length[-1]) if len(cols.pos) else 0
    hi = total if limit is None else min(total, offset + limit)
    lo = max(offset, 0)
    size = first_rows or batch_rows
    while lo < hi:
        end = min(lo + size, hi)
        i0 = int(np.searchsorted(cols.pos, lo, side="right")) - 1
        i1 = int(np.searchsorted(cols.pos, end, side="left"))
        start = cols.start[i0:i1].copy()
        length = cols.length[i0:i1].copy()
        pos = cols.pos[i0:i1]
        cut = lo - int(pos[0])  # the first piece may begin before the window
        start[0] += cut
        length[0] -= cut
        length[-1] -= int(pos[-1] + cols.length[i1 - 1]) - end  # the last may end after it
        keep = length > 0
        chunk = cols.chunk[i0:i1]
        if not keep.all():
            chunk, start, length = chunk[keep], start[keep], length[keep]
        yield Window(lo, end, chunk, start, length)
        lo, size = end, batch_rows


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for each (s, n), vectorised."""
    total = int(lengths.sum())
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(total, dtype=np.int64)


def _take(table: pa.Table, at: pa.Array) -> pa.Table:
    """``table``'s rows at ``at``, a column per thread (Arrow's kernels release
    the GIL; one call per column also costs less CPU than ``Table.take``:
    measured on ten-times re-uploaded windows, 0.12 against 0.17 CPU-s per
    1M rows)."""
    columns = list(_POOL.map(lambda c: pc.take(c, at), table.columns))
    return pa.Table.from_arrays(columns, schema=table.schema)


class _Chunk:
    """One chunk as a scan reads it: its row groups' first rows; each read
    opens the object and closes it after (``core.chunks.opened``), and casts
    what it read to the scan's schema (chunks written at different times may
    disagree on a column's nullability, and tables must agree to be joined)."""

    def __init__(
        self, store: ObjectStore, key: str, columns: list[str] | None, schema: pa.Schema | None
    ) -> None:
        self.starts, _ = row_group_starts(store, key)  # then the chunk's row count
        self.store, self.key = store, key
        self.columns, self.schema = columns, schema

    def read(self, groups: list[int]) -> list[pa.Table]:
        """Row groups ``groups`` (ascending, adjacent), each as its own table."""
        with opened(self.store, self.key) as pf:
            table = pf.read_row_groups(groups, columns=self.columns, use_threads=True)
        if self.schema is not None:
            table = table.cast(self.schema)
        out, at = [], 0
        for g in groups:
            n = int(self.starts[g + 1] - self.starts[g])
            out.append(table.slice(at, n))
            at += n
        return out


class Rebatch:
    """Tables of exactly ``rows`` rows (the last fewer) made of tables of any
    size, each one contiguous chunk a column: what is encoded from them (a
    Parquet row group, an Arrow record batch, a read copy's part) is then
    the same whatever the layout the rows came from."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.pending: list[pa.Table] = []
        self.count = 0

    def add(self, table: pa.Table) -> list[pa.Table]:
        """``table`` added; the whole tables ready."""
        if table.num_rows:
            self.pending.append(table)
            self.count += table.num_rows
        if self.count < self.rows:
            return []
        joined = pa.concat_tables(self.pending)
        whole = self.count - self.count % self.rows
        out = [joined.slice(i, self.rows).combine_chunks() for i in range(0, whole, self.rows)]
        rest = joined.slice(whole)
        self.pending, self.count = ([rest] if rest.num_rows else []), rest.num_rows
        return out

    def rest(self) -> pa.Table | None:
        """The last, shorter table (None when there is none)."""
        if not self.count:
            return None
        out = pa.concat_tables(self.pending).combine_chunks()
        self.pending, self.count = [], 0
        return out

    def all(self, tables: Iterable[pa.Table]) -> Iterator[pa.Table]:
        for table in tables:
            yield from self.add(table)
        last = self.rest()
        if last is not None:
            yield last


class Scan:
    """A manifest's rows in order, window by window (see the module's docstring).

    ``columns``: the stored columns to read (``None``: all, ``_row_hash``
    included); ``schema``: what each window is cast to (chunks written at
    different times may disagree on a column's nullability); ``key``: the
    object each of the manifest's chunks is read from (a read copy's parts
    are under ``layouts/``, see ``core.layouts``). Not thread-safe: one
    thread advances it (it may be another than the one that made it)."""

    def __init__(
        self,
        store: ObjectStore,
        manifest: Manifest,
        columns: Sequence[str] | None,
        *,
        schema: pa.Schema | None = None,
        offset: int = 0,
        limit: int | None = None,
        batch_rows: int = BATCH_ROWS,
        first_rows: int | None = None,
        key: Callable[[str], str] = chunk_key,
    ) -> None:
        self.store = store
        self.key = key
        self.manifest = manifest
        self.columns = list(columns) if columns is not None else None
        self.schema = schema
        self.offset, self.limit = offset, limit
        self.batch_rows, self.first_rows = batch_rows, first_rows
        self._chunks: dict[int, _Chunk] = {}
        self._kept: dict[tuple[int, int], pa.Table] = {}  # the last window's row groups
        self.groups_read = 0  # row groups decoded so far (tests and benchmarks)

    def windows(self) -> Iterator[Window]:
        """The windows, split further where one would decode too many row groups."""
        for w in windows(
            self.manifest,
            offset=self.offset,
            limit=self.limit,
            batch_rows=self.batch_rows,
            first_rows=self.first_rows,
        ):
            yield from self._bounded(w)

    def _bounded(self, w: Window) -> Iterator[Window]:
        if len(w.chunk) <= 1 or self._group_count(w) <= MAX_WINDOW_GROUPS:
            yield w
            return
        half = len(w.chunk) // 2  # by pieces: each half needs fewer groups
        rows = int(w.length[:half].sum())
        yield from self._bounded(
            Window(w.lo, w.lo + rows, w.chunk[:half], w.start[:half], w.length[:half])
        )
        yield from self._bounded(
            Window(w.lo + rows, w.hi, w.chunk[half:], w.start[half:], w.length[half:])
        )

    def _group_count(self, w: Window) -> int:
        return sum(len(groups) for _, _, groups in self.plan(w).values())

    def plan(self, w: Window) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """For each chunk of window ``w`` (kept on it): its pieces' indices,
        the row group each starts in, and every row group they need. The
        pieces are grouped by chunk with one radix sort (``by_chunk``), so a
        window over thousands of chunks costs no pass per chunk."""
        if w.groups is None:
            order = by_chunk(w.chunk, len(self.manifest.columns.chunks))
            cuts = np.flatnonzero(np.diff(w.chunk[order])) + 1
            w.groups = {}
            for mine in np.split(order, cuts) if len(order) else []:
                k = int(w.chunk[mine[0]])
                starts = self._chunk(k).starts
                s, n = w.start[mine], w.length[mine]
                g0 = np.searchsorted(starts, s, side="right") - 1
                g1 = np.searchsorted(starts, s + n - 1, side="right") - 1
                w.groups[k] = (mine, g0, np.unique(_ranges(g0, g1 - g0 + 1)))
        return w.groups

    def _chunk(self, k: int) -> _Chunk:
        c = self._chunks.get(k)
        if c is None:
            key = self.key(self.manifest.columns.chunks[k])
            c = _Chunk(self.store, key, self.columns, self.schema)
            self._chunks[k] = c
        return c

    def _missing(self, k: int, groups: np.ndarray) -> list[np.ndarray]:
        """Runs of adjacent row groups of chunk ``k`` not kept from the last window."""
        missing = [g for g in groups.tolist() if (k, g) not in self._kept]
        return np.split(missing, np.flatnonzero(np.diff(missing) != 1) + 1) if missing else []

    def skip(self, w: Window) -> None:
        """Window ``w`` is read elsewhere (``features.exports.gathered``):
        nothing kept from the window before is needed for the next, and only
        ``w``'s chunks stay open, as after ``read``."""
        self._kept = {}
        self._chunks = {k: c for k, c in self._chunks.items() if k in (w.groups or {})}

    def read(self, w: Window) -> pa.Table:
        """Window ``w``'s rows in table order."""
        parts: list[pa.Table] = []
        kept: dict[tuple[int, int], pa.Table] = {}
        first = np.empty(len(w.chunk), dtype=np.int64)  # each piece's first row in ``parts``
        at = 0
        plan = self.plan(w)
        wanted = {k: self._missing(k, groups) for k, (_, _, groups) in plan.items()}
        for k, runs in wanted.items():  # every chunk's bytes asked for before any is read
            chunk = self._chunk(k)
            for run in runs:
                will_read_groups(self.store, chunk.key, int(run[0]), int(run[-1]), chunk.columns)
        for k, (mine, g0, groups) in plan.items():
            chunk = self._chunk(k)
            for run in wanted[k]:
                read = chunk.read(run.tolist())
                self.groups_read += len(read)
                self._kept.update(((k, int(g)), t) for g, t in zip(run, read, strict=True))
            # the needed groups lie one after the other in ``parts``, so each
            # piece's rows do too, even when it spans several groups
            offset_of = np.zeros(len(chunk.starts), dtype=np.int64)
            for g in groups.tolist():
                t = self._kept[(k, g)]
                kept[(k, g)] = t
                parts.append(t)
                offset_of[g] = at
                at += t.num_rows
            first[mine] = offset_of[g0] + (w.start[mine] - chunk.starts[g0])
        self._kept = kept
        # only the window's chunks stay open for the next one: what a scan
        # holds does not grow with the table
        self._chunks = {k: c for k, c in self._chunks.items() if k in plan}
        src = pa.concat_tables(parts, promote_options="default") if len(parts) > 1 else parts[0]
        if len(w.chunk) <= SLICE_MAX_PIECES:
            out = [src.slice(int(f), int(n)) for f, n in zip(first, w.length, strict=True)]
            return pa.concat_tables(out) if len(out) > 1 else out[0]
        return _take(src, pa.array(_ranges(first, w.length)))

    def __iter__(self) -> Iterator[pa.Table]:
        for w in self.windows():
            yield self.read(w)

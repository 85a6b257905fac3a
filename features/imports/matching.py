"""Pairing a new version's rows with its parent's in bounded memory.

``dedup`` and ``lines`` pair each row (or line) of a new table with a row
of the table it replaces, by hash and occurrence (``dedup.match``), then
place every row and cut the table into runs (``dedup.place``). In memory
that peaks at ~60 bytes a row (both sides' hashes and the join): 6 GB for
a 100M-row table. Past ``EXTERNAL_ROWS`` on either side it runs as an
external hash join instead (decision 0039):

1. both sides' records, new (hash halves, row number) and old (hash
   halves, chunk, position, in table order), are appended to 256 bucket
   files by the hash's top byte (``Buckets``), in the job's work directory;
2. consecutive buckets are joined in groups of about ``GROUP_ROWS``
   records with ``dedup.match``: every copy of a row is in one bucket, in
   the order it was written, so the k-th copy still pairs with the k-th
   copy; each pair (row number, chunk, position) goes to a bucket by row
   range;
3. range by range (in table order), each row is placed where its partner
   is, or at the next free place in the new chunks, and the rows are cut
   into runs, the last run of a range joined with the first of the next:
   the manifest is the one the in-memory path makes (tested).

Memory: one group's records and join (~``GROUP_ROWS`` × 60 bytes), 1 bit a
row for the unmatched mask, and the runs; a version so fragmented that its
runs pass ``dedup.too_fragmented`` stops early (``None``: stored afresh).
Disk: 24 bytes a row a side, 16 a paired row. Only copies of one row share
a bucket whatever the bits: a file of millions of identical rows makes one
large group, and meets the import's memory limit.
"""

from __future__ import annotations

import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import polars as pl

from core.chunks import read_hashes
from core.objects import Manifest
from core.storage import ObjectStore

EXTERNAL_ROWS = 4_000_000
GROUP_ROWS = 2_000_000
RANGE_ROWS = 4_000_000
SLICE_ROWS = 1 << 20
BUCKETS = 256
FLUSH_BYTES = 32 * 1024**2
CHUNK_CACHE = 32  # chunks' hash columns kept while the parent's rows are read

# records are columns of uint64 words: (h1, h2, row) new, (h1, h2, chunk << 32 |
# pos) old, (row, chunk << 32 | pos) a pair; one file a bucket and column
# (numpy gathers a plain column ~8x faster than rows of several words)
NEW, OLD, HIT = 3, 3, 2
Columns = tuple[np.ndarray, ...]


def match(new: pl.DataFrame, old: pl.DataFrame) -> pl.DataFrame:
    """Each row of ``new`` (hash halves ``h1``, ``h2``) with the columns of its
    partner in ``old`` (``h1``, ``h2`` and payload columns; null: no partner),
    pairing the k-th copy of a hash in ``new`` with the k-th in ``old``."""
    payload = [c for c in old.columns if c not in ("h1", "h2")]
    if _unique(new) and _unique(old):
        # no row repeats on either side (the usual case): occurrences are all
        # 0 and the first half of the hash finds the partner; the second
        # half confirms it
        return new.join(
            old.rename({"h2": "h2p"}), on="h1", how="left", maintain_order="left"
        ).with_columns(
            pl.when(pl.col("h2") == pl.col("h2p")).then(pl.col(c)).alias(c) for c in payload
        )
    return _with_occurrence(new).join(
        _with_occurrence(old), on=["h1", "h2", "occ"], how="left", maintain_order="left"
    )


def _unique(df: pl.DataFrame) -> bool:
    """Whether no two rows share the first half of their hash (a distinct count
    is ~3x cheaper than finding the duplicates)."""
    return bool(df.get_column("h1").n_unique() == df.height)


def _with_occurrence(df: pl.DataFrame) -> pl.DataFrame:
    """``occ``: how many earlier rows have the same hash (0 for most rows).

    A window over all rows costs ~1.2 s per million; only rows whose first
    half repeats (found in ~0.1 s) can have an earlier copy, so only they are
    numbered."""
    occ = pl.zeros(df.height, dtype=pl.UInt32, eager=True)
    repeated = df.get_column("h1").is_duplicated()
    if repeated.any():
        idx = repeated.arg_true()
        sub = df[idx].select(occ=pl.int_range(pl.len(), dtype=pl.UInt32).over(["h1", "h2"]))
        occ = occ.scatter(idx, sub.get_column("occ"))
    return df.with_columns(occ=occ)


def by_hash(records: Columns) -> np.ndarray:
    return (records[0] >> np.uint64(56)).astype(np.uint8)


class Buckets:
    """Records of ``width`` uint64 columns appended to ``BUCKETS`` buckets by
    ``key`` (a bucket number a record), a file a bucket and column, buffered
    so that a file is written once a ``FLUSH_BYTES`` of records, not once a
    batch."""

    def __init__(
        self,
        directory: Path,
        width: int,
        key: Callable[[Columns], np.ndarray] = by_hash,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.dir, self.width, self.key = directory, width, key
        self._buffered: list[list[Columns]] = [[] for _ in range(BUCKETS)]
        self.counts = np.zeros(BUCKETS, dtype=np.int64)
        self._pending = 0

    def add(self, records: Columns) -> None:
        n = len(records[0])
        if not n:
            return
        keys = self.key(records)
        order = np.argsort(keys, kind="stable")  # keeps each bucket's records in order
        records = tuple(np.take(c, order) for c in records)
        bounds = np.searchsorted(keys[order], np.arange(BUCKETS + 1))
        for b in np.flatnonzero(np.diff(bounds)).tolist():
            lo, hi = bounds[b], bounds[b + 1]
            self._buffered[b].append(tuple(c[lo:hi] for c in records))
            self.counts[b] += hi - lo
        self._pending += 8 * n * self.width
        if self._pending >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        for b, parts in enumerate(self._buffered):
            for i in range(self.width):
                if parts:
                    with open(self._path(b, i), "ab") as f:
                        for part in parts:
                            f.write(part[i].tobytes())
            parts.clear()
        self._pending = 0

    def take(self, b: int) -> Columns:
        """Bucket ``b``'s records (flushed first), its files removed."""
        if not self.counts[b]:
            return tuple(np.empty(0, np.uint64) for _ in range(self.width))
        out = []
        for i in range(self.width):
            path = self._path(b, i)
            out.append(np.fromfile(path, dtype="<u8"))
            path.unlink()
        return tuple(out)

    def _path(self, b: int, column: int) -> Path:
        return self.dir / f"{b:03d}.{column}"


class Pairing:
    """Both sides of an external match, spilled as they come; ``place``
    gives what ``dedup.place(dedup.match(new, old), ...)`` gives."""

    def __init__(self, work: Path, name: str) -> None:
        self.dir = work / f"match-{name}"
        self.new = Buckets(self.dir / "new", NEW)
        self.old = Buckets(self.dir / "old", OLD)
        self.new_rows = 0
        self.stop = threading.Event()  # set: a spill in progress gives up (``spill_parent``)

    def add_new(self, h1: np.ndarray, h2: np.ndarray) -> None:
        idx = np.arange(self.new_rows, self.new_rows + len(h1), dtype=np.uint64)
        self.new_rows += len(h1)
        self.new.add((h1, h2, idx))

    def add_old(self, h1: np.ndarray, h2: np.ndarray, chunk: np.ndarray, pos: np.ndarray) -> None:
        at = (chunk.astype(np.uint64) << np.uint64(32)) | pos.astype(np.uint64)
        self.old.add((h1, h2, at))

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def place(
        self, new_chunk_base: int, chunk_rows: int, max_runs: int
    ) -> tuple[pl.Series, pl.DataFrame] | None:
        """The unmatched mask of the new rows and their runs (chunk index,
        start, length), as ``dedup.place``; None past ``max_runs`` runs."""
        self.new.flush()
        self.old.flush()
        rows = self.new_rows
        span = max(RANGE_ROWS, -(-rows // BUCKETS))
        hits = Buckets(self.dir / "hits", HIT, lambda r: (r[0] // np.uint64(span)).astype(np.uint8))
        self._pair(hits)
        hits.flush()
        placed = Placed(new_chunk_base, chunk_rows, max_runs)
        for r, lo in enumerate(range(0, rows, span)):
            n = min(span, rows - lo)
            got = hits.take(r)
            chunk = np.zeros(n, np.uint64)
            pos = np.zeros(n, np.uint64)
            unmatched = np.ones(n, bool)
            at = got[0] - np.uint64(lo)
            chunk[at] = got[1] >> np.uint64(32)
            pos[at] = got[1] & np.uint64(0xFFFFFFFF)
            unmatched[at] = False
            if not placed.add(chunk, pos, unmatched):
                return None
        return placed.result()

    def _pair(self, hits: Buckets) -> None:
        names = ("h1", "h2")
        for group in _groups(self.new.counts + self.old.counts):
            new = [np.concatenate(c) for c in zip(*(self.new.take(b) for b in group), strict=True)]
            old = [np.concatenate(c) for c in zip(*(self.old.take(b) for b in group), strict=True)]
            if not len(new[0]) or not len(old[0]):
                continue
            paired = match(
                pl.DataFrame(dict(zip((*names, "idx"), new, strict=True))),
                pl.DataFrame(dict(zip((*names, "at"), old, strict=True))),
            ).filter(pl.col("at").is_not_null())
            del new, old
            hits.add(tuple(paired.get_column(c).to_numpy() for c in ("idx", "at")))


def _groups(counts: np.ndarray) -> Iterator[list[int]]:
    """Consecutive buckets in groups of about ``GROUP_ROWS`` records."""
    group: list[int] = []
    size = 0
    for b, n in enumerate(counts.tolist()):
        if group and size + n > GROUP_ROWS:
            yield group
            group, size = [], 0
        group.append(b)
        size += n
    if group:
        yield group


class Placed:
    """Rows placed range by range, in table order: each paired one where its
    partner is (``chunk``, ``pos`` given), each unmatched one at the next
    free place in the new chunks (the k-th lands in new chunk
    ``k // chunk_rows`` at ``k % chunk_rows``); the unmatched mask and the
    runs they make."""

    def __init__(self, new_chunk_base: int, chunk_rows: int, max_runs: int) -> None:
        self.base, self.chunk_rows, self.max_runs = new_chunk_base, chunk_rows, max_runs
        self.masks: list[pl.Series] = []
        self.runs = Runs()
        self.placed_new = 0  # unmatched rows placed so far: the next one's place

    def add(self, chunk: np.ndarray, pos: np.ndarray, unmatched: np.ndarray) -> bool:
        """A range's rows (``chunk`` and ``pos`` set where paired); False
        once the runs pass ``max_runs``."""
        k = np.cumsum(unmatched, dtype=np.uint64)[unmatched] - 1 + np.uint64(self.placed_new)
        chunk[unmatched] = np.uint64(self.base) + k // np.uint64(self.chunk_rows)
        pos[unmatched] = k % np.uint64(self.chunk_rows)
        self.placed_new += int(unmatched.sum())
        self.masks.append(pl.Series(unmatched))
        self.runs.add(chunk, pos)
        return self.runs.count <= self.max_runs

    def result(self) -> tuple[pl.Series, pl.DataFrame]:
        mask = pl.concat(self.masks) if self.masks else pl.Series([], dtype=pl.Boolean)
        return mask, self.runs.frame()


class Runs:
    """Runs of rows at consecutive positions of one chunk, range by range,
    a run carried over a range's end when the next range continues it."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.count = 0

    def add(self, chunk: np.ndarray, pos: np.ndarray) -> None:
        n = len(chunk)
        if not n:
            return
        brk = np.ones(n, bool)
        brk[1:] = (chunk[1:] != chunk[:-1]) | (pos[1:] != pos[:-1] + np.uint64(1))
        first = np.flatnonzero(brk)
        length = np.diff(np.append(first, n)).astype(np.uint64)
        c, s = chunk[first], pos[first]
        if self.parts:
            pc, ps, pl_ = self.parts[-1]
            if pc[-1] == c[0] and ps[-1] + pl_[-1] == s[0]:
                pl_[-1] += length[0]
                c, s, length = c[1:], s[1:], length[1:]
        if len(c):
            self.parts.append((c, s, length))
        self.count += len(c)

    def frame(self) -> pl.DataFrame:
        if not self.parts:
            return pl.DataFrame(
                schema={"chunk": pl.UInt64, "start": pl.UInt64, "length": pl.UInt64}
            )
        return pl.DataFrame(
            {
                "chunk": np.concatenate([p[0] for p in self.parts]),
                "start": np.concatenate([p[1] for p in self.parts]),
                "length": np.concatenate([p[2] for p in self.parts]),
            }
        )


def table_slices(manifest: Manifest) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """The table's rows in order as (first row, chunk index, position)
    arrays, about ``SLICE_ROWS`` rows at a time (whole pieces)."""
    cols = manifest.columns
    ends = np.cumsum(cols.length)
    i, first = 0, 0
    while i < len(ends):
        j = max(i + 1, int(np.searchsorted(ends, first + SLICE_ROWS, side="right")))
        c, s, n = cols.chunk[i:j], cols.start[i:j], cols.length[i:j]
        total = int(n.sum())
        offsets = np.repeat(np.cumsum(n) - n - s, n)
        pos = (np.arange(total) - offsets).astype(np.uint32)
        yield first, np.repeat(c, n).astype(np.uint32), pos
        first += total
        i = j


def halves(hashes: bytes | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """16-byte hashes (``uint8`` or ``bytes``) as two ``uint64`` halves."""
    words = np.frombuffer(hashes, dtype="<u8").reshape(-1, 2)
    return words[:, 0], words[:, 1]


def spill_parent(pairing: Pairing, store: ObjectStore, manifest: Manifest) -> None:
    """The parent table's rows, in order, as the old side: each chunk's
    ``_row_hash`` column read once while its pieces follow one another (a
    few kept for fragmented tables)."""
    ids = list(manifest.columns.chunks)
    cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def hashes_of(c: int) -> np.ndarray:
        if c in cache:
            cache.move_to_end(c)
            return cache[c]
        cache[c] = read_hashes(store, ids[c], keep=False)
        if len(cache) > CHUNK_CACHE:
            cache.popitem(last=False)
        return cache[c]

    for _, chunk, pos in table_slices(manifest):
        if pairing.stop.is_set():  # the import was abandoned (cancelled, failed)
            return
        h = np.empty((len(chunk), 2), np.uint64)
        used, inverse = np.unique(chunk, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(used) + 1))
        for g, c in enumerate(used.tolist()):
            rows = order[bounds[g] : bounds[g + 1]]
            h[rows] = hashes_of(c)[pos[rows]]
        pairing.add_old(h[:, 0], h[:, 1], chunk, pos)

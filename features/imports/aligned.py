"""Pairing a re-upload's lines with the old version's where they stand
first (decision 0042).

A re-upload mostly repeats its lines where they were: line i of the new
file *is* row i + d of the version it replaces (d changing only where lines
were inserted or deleted), but for the few lines edited. Pairing by hash on
disk (``matching.Pairing``, decision 0039) writes and sorts every hash of
both sides (~32 s of a 100M-row re-upload on a quiet machine); walking the
two hash files side by side reads each about once (the new one twice).
The result must be the one the pairing by hash and occurrence gives (the
k-th copy of a line with the k-th copy), so that a re-upload by lines and a
full import make the same version. Three passes:

1. **Walk** (``_Walk``): new line i against old line i + d. Lines that
   differ are *left over* on both sides; where ``RUN`` or more differ in a
   row, a few later lines are looked up near their place to find a new d
   (an insertion or deletion; the lines skipped are left over). The map
   from new places to old ones keeps the order.
2. **Find the copies.** A hash left over on either side is *unsettled*:
   its copies may pair otherwise than in place. Every line paired in place
   whose hash is unsettled (its first half, a superset) joins the left-over
   lines on both sides.
3. **Pair the unsettled** by hash and occurrence (``matching.match``) over
   all their copies; every other line keeps its place. A hash with no copy
   left over has its copies paired in place by an order-keeping map, so the
   k-th pairs with the k-th there too: the pairing is exactly the pairing by
   occurrence (tested against it).

Then each line is placed as ``Pairing.place`` places it (range by range).
When too much is left over (a file sorted otherwise, a shift the walk does
not find, a file of many copies of a line), it says so (``Misaligned``) as
soon as it knows and the caller pairs by hash. Memory: the left-over and
unsettled lines (~60 bytes each, at most ``limit`` of them a side) and a
range's places.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from core.objects import Manifest
from features.imports.line_index import Records
from features.imports.matching import RANGE_ROWS, SLICE_ROWS, Placed, match

FILTER_BITS = 24  # 16 MiB of flags
RUN = 32  # this many lines out of place in a row: look for a shift
WINDOW = 1 << 16  # a shift of up to this many lines (an insertion or deletion) is found
NEAR = 1 << 7  # a probe looks this close first
PROBES = 21  # lines looked up past a shift's start: 1, 2, 4, ... 2**20 lines on
SYNC_BLOCK = 1 << 8  # lines compared first after a shift
BUDGET = 6  # the walk reads at most this many times both files' lines


class Misaligned(Exception):
    """Too many lines are not where they were: pair by hash instead."""


def place(
    new: Records, old: Records, manifest: Manifest, chunk_rows: int, max_runs: int, limit: int
) -> tuple[pl.Series, pl.DataFrame] | None:
    """The unmatched mask of ``new``'s lines and their runs (chunk index,
    start, length), as ``Pairing.place`` gives them; None past ``max_runs``
    runs. Raises ``Misaligned`` when more than ``limit`` lines of either side
    are left over or unsettled."""
    walk = _Walk(new, old, limit)
    walk.run()
    left_new, left_old = walk.left_new.lines(), walk.left_old.lines()
    unsettled = np.unique(np.concatenate([left_new[1][:, 0], left_old[1][:, 0]]))
    room = limit - max(len(left_new[0]), len(left_old[0]))
    copies = _copies(new, walk.stretches, left_new[0], unsettled, room)
    partner = _pair_unsettled(left_new, left_old, copies)
    return _placed(new.count, manifest, chunk_rows, max_runs, walk.stretches, partner)


Lines = tuple[np.ndarray, np.ndarray]  # positions, (n, 2) hash words
Stretch = tuple[int, int, int]  # new lines [lo, hi) stand at old lines [lo + d, hi + d)


class _Left:
    """One side's left-over lines, in ascending order, at most ``limit``
    (checked before any is read: memory stays bounded)."""

    def __init__(self, limit: int) -> None:
        self.at: list[np.ndarray] = [np.empty(0, np.int64)]
        self.words: list[np.ndarray] = [np.empty((0, 2), np.uint64)]
        self.count, self.limit = 0, limit

    def _room(self, n: int) -> None:
        self.count += n
        if self.count > self.limit:
            raise Misaligned

    def add(self, at: np.ndarray, words: np.ndarray) -> None:
        self._room(len(at))
        self.at.append(at)
        self.words.append(words)

    def span(self, records: Records, lo: int, hi: int) -> None:
        if hi > lo:
            self._room(hi - lo)
            self.at.append(np.arange(lo, hi, dtype=np.int64))
            self.words.append(records.words(lo, hi))

    def lines(self) -> Lines:
        return np.concatenate(self.at), np.concatenate(self.words)


class _Walk:
    """Pass 1: walks both files block by block, comparing new line i with old
    line i + d. Lines that differ are left over on both sides. Where
    ``RUN`` or more lines in a row differ, a few later lines of the new file
    are looked up in the old one near their place (``_sync``): found, d
    changes there (an insertion or deletion: the lines between are left
    over); not found, the walk steps over them with d (an edited stretch).
    Old places only grow from stretch to stretch, so the map from new places
    to old ones keeps the order.

    Work is bounded: after a shift the next block is ``SYNC_BLOCK`` lines,
    doubling up to ``SLICE_ROWS`` while no shift is found (so shifts close
    together cost little each), a probe looks ``NEAR`` lines either side
    before ``WINDOW``, and past ``BUDGET`` times both files' lines read the
    walk gives up (``Misaligned``)."""

    def __init__(self, new: Records, old: Records, limit: int) -> None:
        self.new, self.old = new, old
        self.left_new, self.left_old = _Left(limit), _Left(limit)
        self.stretches: list[Stretch] = []
        self.budget = BUDGET * (new.count + old.count) + PROBES * (2 * WINDOW + RUN)
        self.read = 0  # lines read so far (``budget``)

    def _words(self, records: Records, lo: int, hi: int) -> np.ndarray:
        self.read += max(0, hi - lo)
        if self.read > self.budget:
            raise Misaligned
        return records.words(lo, hi)

    def run(self) -> None:
        n, m = self.new.count, self.old.count
        i, d = 0, 0
        old_end = 0  # old lines before this are paired or left over
        synced = 0  # no shift is looked for before this line (one was found up to it)
        block = SLICE_ROWS
        while i < n and i + d < m:
            hi = min(n, i + block, m - d)
            a, b = self._words(self.new, i, hi), self._words(self.old, i + d, hi + d)
            differ = (a[:, 0] != b[:, 0]) | (a[:, 1] != b[:, 1])
            run = _first_run(differ)
            shift = None
            if run is None:
                cut = hi - i
            else:  # a shift there, or an edited stretch to step over
                shift = self._sync(i + run[0], d, i + run[0] + d) if i + run[0] >= synced else None
                cut = run[0] if shift is not None else run[1]
            at = np.flatnonzero(differ[:cut])
            self.left_new.add(at + i, a[at])
            self.left_old.add(at + i + d, b[at])
            if cut:
                self.stretches.append((i, i + cut, d))
            old_end = i + cut + d
            i += cut
            block = min(SLICE_ROWS, 2 * block)
            if shift is not None:
                start, d, synced = shift
                self.left_new.span(self.new, i, start)
                self.left_old.span(self.old, old_end, start + d)
                i, old_end, block = start, start + d, SYNC_BLOCK
        self.left_new.span(self.new, i, n)
        self.left_old.span(self.old, old_end, m)

    def _sync(self, p: int, d: int, old_end: int) -> tuple[int, int, int] | None:
        """Where the new file's lines from ``p`` on stand in the old one: the
        first new line to compare at the new offset, the offset, and the
        line up to which ``RUN`` lines agree at it (no shift is looked for
        before it: the walk moves on); None when not found. Probes lines
        p + 1, p + 2, p + 4, ...: one found once in the old lines near its
        place (``NEAR``, else ``WINDOW`` lines either side), with ``RUN``
        lines after it agreeing, gives the offset."""
        n, m = self.new.count, self.old.count
        for k in range(PROBES):
            q = p + (1 << k)
            if q + RUN > n:
                return None
            probe = self._words(self.new, q, q + RUN)
            for reach in (NEAR, WINDOW):
                lo, hi = max(old_end, q + d - reach), min(m, q + d + reach)
                if hi - lo < RUN:
                    break
                near = self._words(self.old, lo, hi)
                hits = np.flatnonzero((near[:, 0] == probe[0, 0]) & (near[:, 1] == probe[0, 1]))
                if len(hits) > 1:
                    break  # a line with copies near: try the next probe
                if len(hits) == 1:
                    j = lo + int(hits[0])
                    if j + RUN <= m and np.array_equal(self._words(self.old, j, j + RUN), probe):
                        shifted = j - q
                        return max(p, old_end - shifted), shifted, q + RUN
                    break
        return None


def _first_run(differ: np.ndarray) -> tuple[int, int] | None:
    """The first run of ``RUN`` or more differing lines: (start, end)."""
    if not differ.any():
        return None
    edges = np.flatnonzero(np.diff(np.concatenate(([0], differ.view(np.int8), [0]))))
    starts, ends = edges[::2], edges[1::2]
    long = np.flatnonzero(ends - starts >= RUN)
    return (int(starts[long[0]]), int(ends[long[0]])) if len(long) else None


def _copies(
    new: Records, stretches: list[Stretch], left: np.ndarray, unsettled: np.ndarray, room: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pass 2: the lines paired in place (the same on both sides) whose
    hash's first half is unsettled: their new and old places and hashes. A
    table of ``FILTER_BITS`` flags by the hash's top bits rules out most
    lines with one gather (measured: ~10x a hash-set lookup of each), a
    binary search settles the rest. A line in no stretch is left over."""
    at: list[np.ndarray] = [np.empty(0, np.int64)]
    to: list[np.ndarray] = [np.empty(0, np.int64)]
    words: list[np.ndarray] = [np.empty((0, 2), np.uint64)]
    if len(unsettled) and stretches:
        s_lo = np.array([lo for lo, _, _ in stretches], np.int64)
        s_d = np.array([d for _, _, d in stretches], np.int64)
        shift = np.uint64(64 - FILTER_BITS)
        flags = np.zeros(1 << FILTER_BITS, bool)
        flags[unsettled >> shift] = True
        count = 0
        for lo in range(stretches[0][0], stretches[-1][1], SLICE_ROWS):
            hi = min(stretches[-1][1], lo + SLICE_ROWS)
            a = new.words(lo, hi)
            maybe = np.flatnonzero(flags[a[:, 0] >> shift])
            h1 = a[maybe, 0]
            k = np.minimum(np.searchsorted(unsettled, h1), len(unsettled) - 1)
            hit = np.zeros(hi - lo, bool)
            hit[maybe[unsettled[k] == h1]] = True
            i, j = np.searchsorted(left, [lo, hi])
            hit[left[i:j] - lo] = False  # left over (or in no stretch): listed already
            found = np.flatnonzero(hit) + lo
            count += len(found)
            if count > room:
                raise Misaligned
            at.append(found)
            to.append(found + s_d[np.searchsorted(s_lo, found, side="right") - 1])
            words.append(a[found - lo])
    return np.concatenate(at), np.concatenate(to), np.concatenate(words)


def _pair_unsettled(
    left_new: Lines, left_old: Lines, copies: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> Lines:
    """Pass 3: every line of the left-over or unsettled ones with its partner
    (the old line's place, -1 for none), by hash and occurrence."""
    at, to, words = copies

    def side(lines: Lines, places: np.ndarray) -> tuple[np.ndarray, pl.DataFrame]:
        where = np.concatenate([lines[0], places])
        hashes = np.concatenate([lines[1], words])
        order = np.argsort(where, kind="stable")
        where, hashes = where[order], hashes[order]
        return where, pl.DataFrame({"h1": hashes[:, 0], "h2": hashes[:, 1], "at": where})

    new_at, new_frame = side(left_new, at)
    _, old_frame = side(left_old, to)
    got = match(new_frame.drop("at"), old_frame).get_column("at")
    return new_at, got.fill_null(-1).to_numpy().astype(np.int64)


def _placed(
    n: int,
    manifest: Manifest,
    chunk_rows: int,
    max_runs: int,
    stretches: list[Stretch],
    partner: Lines,
) -> tuple[pl.Series, pl.DataFrame] | None:
    """Each new line placed where its partner is (in place within a stretch,
    else as paired by occurrence), or at the next free place in the new
    chunks, range by range; the runs they make."""
    cols = manifest.columns
    first = cols.pos.astype(np.int64)
    at, to = partner
    placed = Placed(len(cols.chunks), chunk_rows, max_runs)
    s_lo = np.array([lo for lo, _, _ in stretches], np.int64)
    for lo in range(0, n, RANGE_ROWS):
        hi = min(n, lo + RANGE_ROWS)
        old = np.full(hi - lo, -1, np.int64)
        first_stretch = max(0, int(np.searchsorted(s_lo, lo, side="right")) - 1)
        for a, b, d in stretches[first_stretch:]:
            if a >= hi:
                break
            a, b = max(a, lo), min(b, hi)
            if b > a:
                old[a - lo : b - lo] = np.arange(a + d, b + d, dtype=np.int64)
        a, b = np.searchsorted(at, [lo, hi])
        old[at[a:b] - lo] = to[a:b]
        unmatched = old < 0
        paired = np.flatnonzero(~unmatched)
        piece = np.searchsorted(first, old[paired], side="right") - 1
        chunk = np.empty(hi - lo, np.uint64)
        pos = np.empty(hi - lo, np.uint64)
        chunk[paired] = cols.chunk[piece]
        pos[paired] = cols.start[piece].astype(np.int64) + old[paired] - first[piece]
        if not placed.add(chunk, pos, unmatched):
            return None
    return placed.result()

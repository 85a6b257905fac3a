"""Pairing a re-upload's lines with the old version's where they stand
first (decision 0042).

A re-upload mostly repeats its lines where they were: line i of the new
file *is* row i of the version it replaces, but for the few lines edited.
Pairing by hash on disk (``matching.Pairing``, decision 0039) writes and
sorts every hash of both sides (~35 s of a 100M-row re-upload on a quiet
machine); comparing the two hash files place by place reads each once.
The result must be the one the pairing by hash and occurrence gives (the
k-th copy of a line with the k-th copy), so that a re-upload by lines and a
full import make the same version. Three passes, in slices:

1. **Compare in place.** Lines ``i`` where the new and the old hash differ,
   and the longer side's tail, are *left over*; the rest pair with
   themselves for now.
2. **Find the copies.** A hash left over on either side is *unsettled*:
   its copies may pair otherwise than in place. Every line paired in place
   whose hash is unsettled (its first half, a superset) joins the left-over
   lines on both sides.
3. **Pair the unsettled** by hash and occurrence (``matching.match``) over
   all their copies; every other line keeps its place. For a hash with no
   copy left over, its copies stand at the same places on both sides, so
   the k-th pairs with the k-th there too: the pairing is exactly the
   pairing by occurrence (tested against it).

Then each line is placed as ``Pairing.place`` places it (range by range).
When too much is left over (an insertion near the top shifts every line
after it; a file sorted otherwise; a file of many copies of a line), it
says so (``Misaligned``) after the first pass and the caller pairs by hash.
Memory: the left-over and unsettled lines (~60 bytes each, at most
``limit`` of them) and a range's places.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from core.objects import Manifest
from features.imports.line_index import Records
from features.imports.matching import RANGE_ROWS, SLICE_ROWS, Runs, match

FILTER_BITS = 24  # 16 MiB of flags


class Misaligned(Exception):
    """Too many lines are not where they were: pair by hash instead."""


def place(
    new: Records, old: Records, manifest: Manifest, chunk_rows: int, max_runs: int, limit: int
) -> tuple[pl.Series, pl.DataFrame] | None:
    """The unmatched mask of ``new``'s lines and their runs (chunk index,
    start, length), as ``Pairing.place`` gives them; None past ``max_runs``
    runs. Raises ``Misaligned`` when more than ``limit`` lines are left over
    or unsettled."""
    n, m = new.count, old.count
    left_new, left_old = _left_over(new, old, limit)
    unsettled = np.unique(np.concatenate([left_new[1][:, 0], left_old[1][:, 0]]))
    settled_apart = _copies(new, min(n, m), left_new[0], unsettled, limit - len(left_new[0]))
    partner = _pair_unsettled(left_new, left_old, settled_apart)
    return _placed(n, manifest, chunk_rows, max_runs, partner)


Lines = tuple[np.ndarray, np.ndarray]  # positions, (n, 2) hash words


def _left_over(new: Records, old: Records, limit: int) -> tuple[Lines, Lines]:
    """Pass 1: the lines of each side whose hash differs from the other
    side's at the same place, and each side's tail past the other's end."""
    n, m = new.count, old.count
    both = min(n, m)
    if max(n, m) - both > limit:
        raise Misaligned
    at: list[np.ndarray] = []
    new_words: list[np.ndarray] = []
    old_words: list[np.ndarray] = []
    count = 0
    for lo in range(0, both, SLICE_ROWS):
        hi = min(both, lo + SLICE_ROWS)
        a, b = new.words(lo, hi), old.words(lo, hi)
        differ = np.flatnonzero((a[:, 0] != b[:, 0]) | (a[:, 1] != b[:, 1]))
        count += len(differ)
        if count + max(n, m) - both > limit:
            raise Misaligned
        at.append(differ + lo)
        new_words.append(a[differ])
        old_words.append(b[differ])
    places = np.concatenate([*at, np.empty(0, np.int64)]).astype(np.int64)
    words = np.empty((0, 2), np.uint64)
    tail_new = np.arange(both, n, dtype=np.int64)
    tail_old = np.arange(both, m, dtype=np.int64)
    return (
        (
            np.concatenate([places, tail_new]),
            np.concatenate([words, *new_words, new.words(both, n)]),
        ),
        (
            np.concatenate([places, tail_old]),
            np.concatenate([words, *old_words, old.words(both, m)]),
        ),
    )


def _copies(new: Records, both: int, left: np.ndarray, unsettled: np.ndarray, room: int) -> Lines:
    """Pass 2: the lines paired in place (the same on both sides) whose
    hash's first half is unsettled. A table of ``FILTER_BITS`` flags by the
    hash's top bits rules out most lines with one gather (measured: ~10x a
    hash-set lookup of each), a binary search settles the rest."""
    empty: Lines = (np.empty(0, np.int64), np.empty((0, 2), np.uint64))
    if not len(unsettled):
        return empty
    shift = np.uint64(64 - FILTER_BITS)
    flags = np.zeros(1 << FILTER_BITS, bool)
    flags[unsettled >> shift] = True
    at: list[np.ndarray] = [empty[0]]
    words: list[np.ndarray] = [empty[1]]
    count = 0
    for lo in range(0, both, SLICE_ROWS):
        hi = min(both, lo + SLICE_ROWS)
        a = new.words(lo, hi)
        maybe = np.flatnonzero(flags[a[:, 0] >> shift])
        h1 = a[maybe, 0]
        k = np.minimum(np.searchsorted(unsettled, h1), len(unsettled) - 1)
        hit = np.zeros(hi - lo, bool)
        hit[maybe[unsettled[k] == h1]] = True
        i, j = np.searchsorted(left, [lo, hi])
        hit[left[i:j] - lo] = False  # left over: on both sides' lists already
        found = np.flatnonzero(hit)
        count += len(found)
        if count > room:
            raise Misaligned
        at.append(found + lo)
        words.append(a[found])
    return np.concatenate(at), np.concatenate(words)


def _pair_unsettled(left_new: Lines, left_old: Lines, copies: Lines) -> Lines:
    """Pass 3: every line of the left-over or unsettled ones with its partner
    (the old line's place, -1 for none), by hash and occurrence."""

    def side(lines: Lines) -> tuple[np.ndarray, pl.DataFrame]:
        at = np.concatenate([lines[0], copies[0]])
        words = np.concatenate([lines[1], copies[1]])
        order = np.argsort(at, kind="stable")
        at, words = at[order], words[order]
        return at, pl.DataFrame({"h1": words[:, 0], "h2": words[:, 1], "at": at})

    new_at, new_frame = side(left_new)
    _, old_frame = side(left_old)
    got = match(new_frame.drop("at"), old_frame).get_column("at")
    return new_at, got.fill_null(-1).to_numpy().astype(np.int64)


def _placed(
    n: int, manifest: Manifest, chunk_rows: int, max_runs: int, partner: Lines
) -> tuple[pl.Series, pl.DataFrame] | None:
    """Each new line placed where its partner is, or at the next free place
    in the new chunks, range by range; the runs they make."""
    cols = manifest.columns
    first = cols.pos.astype(np.int64)
    new_chunk_base = len(cols.chunks)
    at, to = partner
    masks: list[pl.Series] = []
    runs = Runs()
    placed_new = 0
    for lo in range(0, n, RANGE_ROWS):
        hi = min(n, lo + RANGE_ROWS)
        old = np.arange(lo, hi, dtype=np.int64)  # every line past m is in ``at``
        a, b = np.searchsorted(at, [lo, hi])
        old[at[a:b] - lo] = to[a:b]
        unmatched = old < 0
        paired = np.flatnonzero(~unmatched)
        piece = np.searchsorted(first, old[paired], side="right") - 1
        chunk = np.empty(hi - lo, np.uint64)
        pos = np.empty(hi - lo, np.uint64)
        chunk[paired] = cols.chunk[piece]
        pos[paired] = cols.start[piece].astype(np.int64) + old[paired] - first[piece]
        k = np.cumsum(unmatched, dtype=np.uint64)[unmatched] - 1 + np.uint64(placed_new)
        chunk[unmatched] = np.uint64(new_chunk_base) + k // np.uint64(chunk_rows)
        pos[unmatched] = k % np.uint64(chunk_rows)
        placed_new += int(unmatched.sum())
        masks.append(pl.Series(unmatched))
        runs.add(chunk, pos)
        if runs.count > max_runs:
            return None
    return pl.concat(masks) if masks else pl.Series([], dtype=pl.Boolean), runs.frame()

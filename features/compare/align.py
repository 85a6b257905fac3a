"""Row alignment of two versions of a table: which rows match, which were
added, removed or modified, and where each change sits.

The rule (also in docs/compare.md, and what the brute-force reference in the
tests implements):

1. **Same stored row.** Where both manifests use the same stored row (the same
   chunk and row in it) the rows match without reading anything: shared runs
   of a manifest cancel at the piece level. When a stored row is used several
   times on a side, its k-th use in base matches its k-th use in head.
2. **Same content.** The remaining rows match by row hash, occurrence-aware:
   the k-th remaining copy of a row in base matches the k-th remaining copy in
   head (in position order), so duplicates are neither lost nor multiplied.
3. **Pairing into modifications.** Unmatched rows lie in *gaps* between
   matched rows. With a primary key, an unmatched base row and an unmatched
   head row with the same key (k-th with k-th) form a modification. Without
   one, a head gap and a base gap pair up when they sit between the same two
   matched rows (the rows just before and after the gap match each other),
   and their rows pair in order, the way a line diff pairs changed lines;
   the rest are plain additions and removals.
4. **Order.** Changes are listed in head order: an addition or modification
   at its head position; a removal right after the head position of the
   matched row that preceded it in base (removals before additions at the
   same place, in base order).

Everything here is vectorised over *segments* (runs of matched rows), so a
1 % edit of a 1M-row table costs work in proportion to the edit, not the
table, apart from reading the row hashes of the rows that are not shared.
Rule 1 itself walks every piece of both sides once: pieces ordered by chunk
(a radix sort), then one merge of the two sorted lists in C
(``_intervals.c``), and the matched runs joined where they continue each
other, so two versions of 300,000 pieces each cost ~20 ms there
(docs/decisions/0016).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from core.objects import Manifest, PieceColumns, by_chunk
from features.compare import _intervals  # type: ignore[attr-defined]

# reads the 16-byte hashes (as an (n, 2) uint64 array) of base or head rows
# at the given sorted positions
HashReader = Callable[[np.ndarray], np.ndarray]

_I64 = np.int64
_SHIFT = _I64(41)  # (chunk << _SHIFT) | row: one sortable key per stored row


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + n)`` for each (s, n), vectorised."""
    lengths = lengths.astype(_I64)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, _I64)
    keep = lengths > 0
    starts, lengths = starts[keep].astype(_I64), lengths[keep]
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(total, dtype=_I64)


@dataclass(frozen=True)
class _Pieces:
    chunk: np.ndarray  # int ids shared by both sides
    start: np.ndarray  # first row in the chunk
    length: np.ndarray
    pos: np.ndarray  # first position in the table

    def columns(self) -> tuple[np.ndarray, ...]:
        return self.chunk, self.start, self.length, self.pos


def _pieces(m: Manifest, ids: dict[str, int]) -> _Pieces:
    cols = m.columns
    # renumber this manifest's chunks into numbers shared by both sides
    local = np.fromiter((ids.setdefault(c, len(ids)) for c in cols.chunks), _I64, len(cols.chunks))
    keep = cols.length > 0
    chunk = local[cols.chunk] if len(cols.chunk) else cols.chunk
    return _Pieces(chunk[keep], cols.start[keep], cols.length[keep], cols.pos[keep])


def _sorted(p: _Pieces, chunks: int) -> np.ndarray:
    """The pieces' indices ordered by (chunk, start), stably. By chunk first
    with NumPy's radix sort (16-bit keys: linear time), which leaves each
    chunk's pieces in table order: also ordered by start wherever a chunk's
    rows are used in ascending order, as in versions made by re-uploads and
    appends (a fragmented 300,000-piece manifest: ~3 ms against ~10 ms for a
    comparison sort). Otherwise a sort on (chunk, start) keys."""
    order = by_chunk(p.chunk, chunks)
    c, s = p.chunk[order], p.start[order]
    if len(order) < 2 or bool(np.all((s[1:] >= s[:-1]) | (c[1:] != c[:-1]))):
        return order
    return np.argsort((p.chunk << _SHIFT) | p.start, kind="stable")


def _overlapping_chunks(p: _Pieces, order: np.ndarray) -> set[int]:
    """Chunks some of whose rows this side uses more than once (``order``:
    the pieces by (chunk, start))."""
    if len(p.chunk) < 2:
        return set()
    # pieces by (chunk, start) as one int64 key (rows < 2^40, chunks < 2^22):
    # a piece overlaps an earlier one of its chunk when it starts before the
    # running maximum of their ends; keying the ends by chunk too keeps that
    # maximum from leaking across chunks, without a loop over them
    c = p.chunk[order]
    start_key = (c << _SHIFT) | p.start[order]
    end_key = start_key + p.length[order]
    bad = start_key[1:] < np.maximum.accumulate(end_key)[:-1]
    return {int(x) for x in np.unique(c[1:][bad])}


def identity_segments(base: Manifest, head: Manifest) -> np.ndarray:
    """Matched runs ``(base_pos, head_pos, length)`` of rows that both sides
    take from the same stored row (rule 1), as an (n, 3) int64 array."""
    walked = _walk(base.columns, head.columns)
    return walked if walked is not None else _general(base, head)


def _general(base: Manifest, head: Manifest) -> np.ndarray:
    """Rule 1 for any two manifests: pieces sorted by (chunk, start) on
    each side and merged, chunks a side uses rows of twice row by row."""
    ids: dict[str, int] = {}
    b, h = _pieces(base, ids), _pieces(head, ids)
    used_b, used_h = np.zeros(len(ids), bool), np.zeros(len(ids), bool)
    used_b[b.chunk], used_h[h.chunk] = True, True
    common = used_b & used_h
    if not common.any():
        return np.empty((0, 3), _I64)
    bo, ho = _sorted(b, len(ids)), _sorted(h, len(ids))
    dup = {c for c in _overlapping_chunks(b, bo) | _overlapping_chunks(h, ho) if common[c]}
    skip = None
    if dup:
        skip = np.zeros(len(ids), bool)
        skip[list(dup)] = True
    out = []
    if len(dup) < int(common.sum()):
        out.append(_intersect(b, bo, h, ho, skip))
    if dup:
        out.append(_intersect_rowwise(b, h, dup))
    return _joined(np.concatenate(out)) if out else np.empty((0, 3), _I64)


def _walk(b: PieceColumns, h: PieceColumns) -> np.ndarray | None:
    """Rule 1 in one pass over head's pieces (``_intervals.walk``), where
    every chunk both sides use is read in ascending, non-overlapping pieces
    on each side, as in versions made by imports, re-uploads, appends and
    merges; None otherwise. Nothing is sorted but base's pieces by chunk
    (cached with the manifest): two ten-times re-uploaded versions of
    ~300,000 pieces each cost a few ms here against ~50 by the general path."""
    where = {name: i for i, name in enumerate(b.chunks)}
    if len(where) != len(b.chunks) or len(set(h.chunks)) != len(h.chunks):
        # a chunk named twice on a side (an import can write a chunk whose
        # rows, hence id, are one its parent has): its pieces are under two
        # numbers, so their order is not known per number
        return None
    h_to_b = np.array([where.get(name, -1) for name in h.chunks], _I64)
    if not (h_to_b >= 0).any():
        return np.empty((0, 3), _I64)
    bounds = np.zeros(len(b.chunks) + 1, _I64)
    np.cumsum(np.bincount(b.chunk, minlength=len(b.chunks)), out=bounds[1:])
    cols = [
        np.ascontiguousarray(a, dtype=_I64)
        for a in (b.by_chunk, bounds, b.start, b.length, b.pos)
        + (h.chunk, h.start, h.length, h.pos, h_to_b)
    ]
    runs = _intervals.walk(*cols)
    if runs is None:
        return None
    out = np.empty((len(runs[0]) // 8, 3), _I64)
    for k in range(3):
        out[:, k] = np.frombuffer(runs[k], dtype="<i8")
    return out


def _joined(seg: np.ndarray) -> np.ndarray:
    """Segments in head order, those that continue each other on both sides
    (the next starts where the last ended, in base and in head) joined into
    one. Shared pieces of two fragmented versions are many short segments
    (280,000 for versions 9 and 10 of the re-uploaded bench table) that join
    into runs broken only where the rows differ (~20,000 there), so the rest
    of the work grows with the edit, not with the pieces."""
    if len(seg) < 2:
        return seg
    order = np.argsort(seg[:, 1], kind="stable")
    b, h, n = (np.ascontiguousarray(seg[order, k]) for k in range(3))
    cont = (b[1:] == b[:-1] + n[:-1]) & (h[1:] == h[:-1] + n[:-1])
    starts = np.flatnonzero(np.concatenate(([True], ~cont)))
    out = np.empty((len(starts), 3), _I64)
    out[:, 0], out[:, 1] = b[starts], h[starts]
    out[:, 2] = np.add.reduceat(n, starts)
    return out


def _intersect(
    b: _Pieces, bo: np.ndarray, h: _Pieces, ho: np.ndarray, skip: np.ndarray | None
) -> np.ndarray:
    """Interval intersection per chunk where each side uses a stored row at
    most once (so each side's intervals in a chunk are disjoint). ``bo``,
    ``ho``: each side's pieces by (chunk, start); ``skip``: a flag per chunk
    number, the chunks left out (a side uses rows of them twice: they are
    intersected row by row). Chunks only one side uses meet nothing."""
    if skip is not None:
        bo, ho = bo[~skip[b.chunk[bo]]], ho[~skip[h.chunk[ho]]]
    # one merge of the two sorted lists (features/compare/_intervals.c)
    cols = [np.ascontiguousarray(a, dtype=_I64) for a in (bo, *b.columns(), ho, *h.columns())]
    runs = _intervals.intersect(*cols)
    out = np.empty((len(runs[0]) // 8, 3), _I64)
    for k in range(3):
        out[:, k] = np.frombuffer(runs[k], dtype="<i8")
    return out


def _intersect_rowwise(b: _Pieces, h: _Pieces, chunks: set[int]) -> np.ndarray:
    """Rule 1 row by row, for the rare chunks a side uses rows of twice."""

    def uses(p: _Pieces) -> dict[tuple[int, int], list[int]]:
        out: dict[tuple[int, int], list[int]] = defaultdict(list)
        for c, s, n, pos in zip(p.chunk, p.start, p.length, p.pos, strict=True):
            if int(c) in chunks:
                for k in range(int(n)):
                    out[(int(c), int(s) + k)].append(int(pos) + k)
        return out

    bu, hu = uses(b), uses(h)
    rows = []
    for row, bpos in bu.items():
        for x, y in zip(sorted(bpos), sorted(hu.get(row, ())), strict=False):
            rows.append((x, y, 1))
    return np.array(rows, _I64).reshape(-1, 3)


def complement(starts: np.ndarray, lengths: np.ndarray, n: int) -> np.ndarray:
    """Positions in [0, n) not covered by the (disjoint) runs, sorted."""
    order = np.argsort(starts, kind="stable")
    s, e = starts[order], starts[order] + lengths[order]
    gap_start = np.r_[0, e]
    gap_len = np.r_[s, n] - gap_start
    return _ranges(gap_start, gap_len)


def _occurrence(h: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """For each row, how many earlier rows (in position order) have its hash."""
    order = np.lexsort((pos, h[:, 1], h[:, 0]))
    hs = h[order]
    new_group = np.r_[True, (hs[1:] != hs[:-1]).any(axis=1)]
    first = np.maximum.accumulate(np.where(new_group, np.arange(len(hs)), 0))
    k = np.empty(len(hs), dtype=_I64)
    k[order] = np.arange(len(hs)) - first
    return k


def match_by_hash(
    bpos: np.ndarray, bhash: np.ndarray, hpos: np.ndarray, hhash: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rule 2: k-th copy with k-th copy, positions given in order. Returns the
    matched (base positions, head positions), in head order."""
    nb, nh = len(bpos), len(hpos)
    if nb == 0 or nh == 0:
        return np.empty(0, _I64), np.empty(0, _I64)
    # (hash, occurrence) is unique within a side: sort both sides together and
    # a match is a base row directly followed by an equal head row
    a = np.concatenate([bhash[:, 0], hhash[:, 0]])
    b = np.concatenate([bhash[:, 1], hhash[:, 1]])
    k = np.concatenate([_occurrence(bhash, bpos), _occurrence(hhash, hpos)])
    side = np.r_[np.zeros(nb, np.int8), np.ones(nh, np.int8)]
    order = np.lexsort((side, k, b, a))
    a, b, k, side = a[order], b[order], k[order], side[order]
    hit = np.flatnonzero(
        (a[1:] == a[:-1])
        & (b[1:] == b[:-1])
        & (k[1:] == k[:-1])
        & (side[:-1] == 0)
        & (side[1:] == 1)
    )
    bi, hi = order[hit], order[hit + 1] - nb
    by_head = np.argsort(hi, kind="stable")
    return bpos[bi[by_head]].astype(_I64), hpos[hi[by_head]].astype(_I64)


def _runs(bpos: np.ndarray, hpos: np.ndarray) -> np.ndarray:
    """Single matched rows merged into runs where both sides advance by one."""
    if len(bpos) == 0:
        return np.empty((0, 3), _I64)
    order = np.argsort(hpos, kind="stable")
    b, h = bpos[order], hpos[order]
    brk = np.r_[True, (np.diff(b) != 1) | (np.diff(h) != 1)]
    starts = np.flatnonzero(brk)
    lengths = np.diff(np.r_[starts, len(b)])
    return np.stack([b[starts], h[starts], lengths], axis=1)


@dataclass
class Alignment:
    """Matched segments of two versions and the gaps between them."""

    base_rows: int
    head_rows: int
    seg: np.ndarray  # (k, 3): base_pos, head_pos, length, sorted by head_pos

    @cached_property
    def _gaps(self) -> tuple[np.ndarray, ...]:
        """For the virtual start segment and each segment i (in head order):
        its head gap [h0, h1), its base gap [b0, b1), and whether they pair."""
        k = len(self.seg)
        # ids: 0 = virtual start, 1..k = segments in head order, k+1 = virtual end
        B = np.r_[0, self.seg[:, 0], self.base_rows].astype(_I64)
        H = np.r_[0, self.seg[:, 1], self.head_rows].astype(_I64)
        L = np.r_[0, self.seg[:, 2], 0].astype(_I64)
        next_h = np.arange(1, k + 2)
        border = np.r_[0, 1 + np.argsort(self.seg[:, 0], kind="stable"), k + 1]
        next_b = np.empty(k + 2, _I64)
        next_b[border[:-1]] = border[1:]
        ids = np.arange(k + 1)
        h0, h1 = H[ids] + L[ids], H[next_h]
        b0, b1 = B[ids] + L[ids], B[next_b[ids]]
        paired = next_h == next_b[ids]
        return h0, h1, b0, b1, paired

    @property
    def matched(self) -> int:
        return int(self.seg[:, 2].sum()) if len(self.seg) else 0

    def unmatched_head(self) -> np.ndarray:
        h0, h1, *_ = self._gaps
        return _ranges(h0, h1 - h0)

    def unmatched_base(self) -> np.ndarray:
        _, _, b0, b1, _ = self._gaps
        return np.sort(_ranges(b0, b1 - b0))

    def removal_anchor(self, bpos: np.ndarray) -> np.ndarray:
        """Head position each unmatched base row is listed at (rule 4)."""
        h0, _, b0, b1, _ = self._gaps
        order = np.argsort(b0, kind="stable")
        i = np.searchsorted(b0[order], bpos, side="right") - 1
        return h0[order][i]

    def positional_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Rule 3 without a key: (base positions, head positions) of modifications."""
        h0, h1, b0, b1, paired = self._gaps
        m = np.where(paired, np.minimum(h1 - h0, b1 - b0), 0)
        return _ranges(b0, m), _ranges(h0, m)


def align(
    base: Manifest,
    head: Manifest,
    read_base: HashReader,
    read_head: HashReader,
    *,
    shortcut: bool = True,
    by_hash: bool = True,
) -> Alignment:
    """Rules 1 and 2. ``shortcut=False`` skips rule 1 (tables whose rows are
    compared on a projection, where stored rows do not say enough);
    ``by_hash=False`` skips rule 2 (the rows rule 1 leaves are known to
    share no hash: ``service.remember_disjoint``)."""
    nb, nh = int(base.columns.length.sum()), int(head.columns.length.sum())
    ident = identity_segments(base, head) if shortcut else np.empty((0, 3), _I64)
    rest_b = complement(ident[:, 0], ident[:, 2], nb)
    rest_h = complement(ident[:, 1], ident[:, 2], nh)
    if by_hash and len(rest_b) and len(rest_h):
        mb, mh = match_by_hash(rest_b, read_base(rest_b), rest_h, read_head(rest_h))
        hashed = _runs(mb, mh)
    else:
        hashed = np.empty((0, 3), _I64)
    seg = np.concatenate([ident, hashed]) if len(hashed) else ident
    seg = seg[np.argsort(seg[:, 1], kind="stable")] if len(seg) else seg
    return Alignment(nb, nh, seg.astype(_I64).reshape(-1, 3))


def warm_up() -> None:
    """Run every step once on a tiny input: NumPy pays a one-time cost on the
    first call of several of these functions (tens of ms, measured), which
    would otherwise land on the first compare a user asks for."""
    from core.objects import Piece

    a = Manifest((Piece("a" * 64, 0, 3), Piece("b" * 64, 0, 2)))
    b = Manifest((Piece("b" * 64, 0, 2), Piece("a" * 64, 1, 2), Piece("c" * 64, 0, 1)))

    def hashes(p: np.ndarray) -> np.ndarray:
        return np.stack([p.astype(np.uint64) % 2, np.zeros(len(p), np.uint64)], axis=1)

    al = align(a, b, hashes, hashes)
    al.positional_pairs()
    al.removal_anchor(al.unmatched_base())
    # the first np.unique of a process imports numpy.ma (~30 ms): reading
    # the rows of a compare calls it
    np.unique(np.zeros(2, _I64), return_inverse=True)
    _general(a, b)

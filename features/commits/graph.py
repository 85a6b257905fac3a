"""The commit graph as chains and links (see migrations/0002_reflog.sql).

Every commit sits at a position of a chain, a path along first-parent edges;
a commit reaches every commit of its own chain at a lower position. The
parent edges that leave a chain are *links*. So the ancestors of a commit are
described by a small map ``{chain: highest position reached}``, found by
walking links only: the work grows with the number of branches and merges,
not with the number of commits. Pure functions over rows the service loads.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Point:
    """A commit's place in the graph: its chain, position there and generation."""

    chain: int
    pos: int
    generation: int


@dataclass(frozen=True, slots=True)
class Link:
    """Parent ``parent_index`` of the commit at (chain, pos) is ``parent``."""

    chain: int
    pos: int
    parent_index: int
    parent: Point


Reach = dict[int, Point]  # chain -> the highest point of that chain that is an ancestor


class Graph:
    """The links of one dataset, indexed by chain and position."""

    def __init__(self, links: Iterable[Link]) -> None:
        by_chain: dict[int, list[Link]] = {}
        for link in links:
            by_chain.setdefault(link.chain, []).append(link)
        self._links = {
            c: sorted(ls, key=lambda x: (x.pos, x.parent_index)) for c, ls in by_chain.items()
        }
        self._pos = {c: [x.pos for x in ls] for c, ls in self._links.items()}

    @classmethod
    def from_rows(cls, rows: Iterable[dict[str, Any]]) -> Graph:
        return cls(
            Link(
                r["chain"],
                r["chain_pos"],
                r["parent_index"],
                Point(r["parent_chain"], r["parent_pos"], r["parent_generation"]),
            )
            for r in rows
        )

    def reach(self, start: Point) -> Reach:
        """The ancestors of ``start`` (itself included) as {chain: highest point}.

        Each chain's links are visited once per position range newly covered,
        so every link is followed at most once."""
        best: Reach = {}
        stack = [start]
        while stack:
            p = stack.pop()
            old = best.get(p.chain)
            if old is not None and old.pos >= p.pos:
                continue
            best[p.chain] = p
            links = self._links.get(p.chain)
            if not links:
                continue
            pos = self._pos[p.chain]
            lo = bisect_right(pos, old.pos) if old is not None else 0
            hi = bisect_right(pos, p.pos)
            stack.extend(link.parent for link in links[lo:hi])
        return best

    def base(self, chain: int) -> Point | None:
        """The first parent of the chain's first commit (None for a root's chain)."""
        links = self._links.get(chain)
        if not links:
            return None
        i = bisect_left(self._pos[chain], 0)
        if i < len(links) and links[i].pos == 0 and links[i].parent_index == 0:
            return links[i].parent
        return None


def count(reach: Reach) -> int:
    """How many commits a reach map covers."""
    return sum(p.pos + 1 for p in reach.values())


def common_tips(a: Reach, b: Reach) -> list[Point]:
    """For each chain both reach, the highest commit of it that both reach.

    The common ancestors are exactly these points and everything below them
    in their chains; the one with the highest generation is a best common
    ancestor (no other common ancestor descends from it)."""
    out = []
    for chain, pa in a.items():
        pb = b.get(chain)
        if pb is not None:
            out.append(pa if pa.pos <= pb.pos else pb)
    return out


def first_parent_segments(
    graph: Graph, head: Point, depth: int, *, min_depth: int, max_depth: int
) -> list[tuple[int, int, int]]:
    """The part of ``head``'s first-parent chain between two depths (first-parent
    distances from the root; ``depth`` is head's) as (chain, from_pos, to_pos)
    segments, newest first."""
    out: list[tuple[int, int, int]] = []
    p: Point | None = head
    top = depth  # the depth of p
    while p is not None and top >= min_depth:
        low = top - p.pos  # the depth of the chain's first commit
        hi = min(p.pos, max_depth - low)
        lo = max(0, min_depth - low)
        if lo <= hi:
            out.append((p.chain, lo, hi))
        top = low - 1
        p = graph.base(p.chain)
    return out

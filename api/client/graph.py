"""History drawn as ``git log --graph --oneline`` draws it: one column per
line of descent, ``*`` for the commit, ``|`` for lines passing by, a merge
opening a column for its second parent (``|\\``) and lines that reach the
same commit closing (``|/``). Commits come newest first, a commit before
its parents (the server's ``?all=true`` order)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def draw(commits: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(prefix, commit) per line; a None commit is a connecting line."""
    lanes: list[str | None] = []  # the commit each column waits for
    for c in commits:
        cid = c["id"]
        if cid not in lanes:
            lanes.append(cid)
        col = lanes.index(cid)
        # other columns waiting for this commit join it
        joining = [i for i, w in enumerate(lanes) if w == cid and i != col]
        yield " ".join("*" if i == col else "|" for i in range(len(lanes))) + " ", c
        for i in joining:
            lanes[i] = None
        if joining:
            cells = []
            for i in range(len(lanes)):
                cells.append("/" if i in joining else ("|" if lanes[i] is not None else " "))
            yield " ".join(cells).rstrip() + " ", None
        parents = list(c.get("parents") or [])
        lanes[col] = parents[0] if parents else None
        for p in parents[1:]:
            if p in lanes:
                continue
            free = next((i for i, w in enumerate(lanes) if w is None and i > col), None)
            if free is None:
                lanes.append(p)
                free = len(lanes) - 1
            else:
                lanes[free] = p
            cells = ["|" if w is not None else " " for w in lanes]
            cells[free] = "\\"
            yield " ".join(cells).rstrip() + " ", None
        while lanes and lanes[-1] is None:
            lanes.pop()

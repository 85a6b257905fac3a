"""Schema diff of two versions of a table.

- ``added`` / ``removed``: columns only in head / only in base;
- ``renamed``: a removed and an added column of the same type holding the
  same data (same values in the same rows; only checked when both versions
  have the same number of rows), reported as ``{from, to}`` instead;
- ``retyped``: same name, another logical type, with ``widening`` true when
  every old value has an exact new spelling (integer → float, anything →
  string, date → datetime, boolean → integer);
- ``reordered``: columns in both whose relative order changed (the fewest
  columns that, moved, explain the new order);
- ``nullability``: columns that became nullable or not;
- ``breaking``: a reader of the old schema would fail: a column removed or
  renamed, or a type narrowed.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core import deadline
from core.objects import Schema
from core.schema import kind_of, parse_type

WIDENING = {
    ("integer", "float"),
    ("integer", "string"),
    ("float", "string"),
    ("boolean", "string"),
    ("boolean", "integer"),
    ("date", "string"),
    ("date", "datetime"),
    ("datetime", "string"),
    ("datetime_tz", "string"),
}


def widening(old: str, new: str) -> bool:
    """Whether every value of type ``old`` is a value of type ``new``: the pairs
    above, any exact type to text, and a decimal to one with as many integer
    digits and at least its scale (an integer to a decimal of 19+ integer digits)."""
    if (old, new) in WIDENING:
        return True
    a, b = kind_of(old), kind_of(new)
    if b == "string":
        return a in ("decimal", "time", "duration")
    if b != "decimal":
        return False
    nb = parse_type(new)
    if a == "integer":
        return nb.precision - nb.scale >= 19
    if a != "decimal":
        return False
    na = parse_type(old)
    return nb.scale >= na.scale and nb.precision - nb.scale >= na.precision - na.scale


@dataclass
class SchemaDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    renamed: list[dict[str, str]] = field(default_factory=list)
    retyped: list[dict[str, Any]] = field(default_factory=list)
    reordered: list[str] = field(default_factory=list)
    nullability: list[dict[str, Any]] = field(default_factory=list)
    # base column name -> head column name, for every column in both
    shared: dict[str, str] = field(default_factory=dict)

    @property
    def breaking(self) -> bool:
        return bool(self.removed or self.renamed) or any(not r["widening"] for r in self.retyped)

    @property
    def changed(self) -> bool:
        return bool(
            self.added
            or self.removed
            or self.renamed
            or self.retyped
            or self.reordered
            or self.nullability
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "removed": self.removed,
            "renamed": self.renamed,
            "retyped": self.retyped,
            "reordered": self.reordered,
            "nullability": self.nullability,
            "breaking": self.breaking,
        }


# pairs of a removed and an added column compared by content, at most (each reads both)
MAX_RENAME_CHECKS = 64


def diff(
    base: Schema | None,
    head: Schema | None,
    same_data: Callable[[str, str], bool] = lambda a, b: False,
) -> SchemaDiff:
    """``same_data(base_col, head_col)`` says whether two columns hold the same
    values in the same rows (rename detection). It reads both columns, so at
    most ``MAX_RENAME_CHECKS`` pairs are compared by content: a version that
    drops and adds hundreds of columns of one type costs a bounded read, and
    past the cap the columns count as removed and added, not renamed."""
    bcols = {c.name: c for c in base.columns} if base else {}
    hcols = {c.name: c for c in head.columns} if head else {}
    out = SchemaDiff()
    removed = [n for n in bcols if n not in hcols]
    added = [n for n in hcols if n not in bcols]
    checks = 0
    for r in list(removed):
        for a in added:
            if bcols[r].type != hcols[a].type or checks >= MAX_RENAME_CHECKS:
                continue
            checks += 1
            deadline.check()
            if same_data(r, a):
                out.renamed.append({"from": r, "to": a})
                removed.remove(r)
                added.remove(a)
                break
    out.added, out.removed = added, removed
    out.shared = {n: n for n in bcols if n in hcols}
    out.shared.update({r["from"]: r["to"] for r in out.renamed})
    for n in bcols:
        if n in hcols and bcols[n].type != hcols[n].type:
            pair = (bcols[n].type, hcols[n].type)
            out.retyped.append(
                {"column": n, "from": pair[0], "to": pair[1], "widening": widening(*pair)}
            )
        if n in hcols and bcols[n].nullable != hcols[n].nullable:
            out.nullability.append(
                {"column": n, "from": bcols[n].nullable, "to": hcols[n].nullable}
            )
    out.reordered = _moved(
        [out.shared[n] for n in bcols if n in out.shared],
        [n for n in hcols if n in set(out.shared.values())],
    )
    return out


def _moved(before: list[str], after: list[str]) -> list[str]:
    """Columns outside a longest run kept in order (longest increasing
    subsequence of old positions, O(n log n)), in new order."""
    rank = {n: i for i, n in enumerate(before)}
    seq = [rank[n] for n in after]
    tails: list[int] = []  # smallest tail value of an increasing run of each length
    tail_at: list[int] = []  # index in seq of that tail
    prev = [-1] * len(seq)
    for i, v in enumerate(seq):
        j = bisect.bisect_left(tails, v)
        if j == len(tails):
            tails.append(v)
            tail_at.append(i)
        else:
            tails[j] = v
            tail_at[j] = i
        prev[i] = tail_at[j - 1] if j else -1
    keep: set[int] = set()
    i = tail_at[-1] if tail_at else -1
    while i >= 0:
        keep.add(i)
        i = prev[i]
    return [n for i, n in enumerate(after) if i not in keep]

"""Schema changes people meant: when a file's columns differ from the table
it replaces, which of its new columns are the table's old ones renamed,
and which columns changed type.

A rename is scored on two things, each 0–1:

- **the names**: the better of difflib's similarity of the lowercased names
  (letters and digits only) and an abbreviation match (``cust_id`` and
  ``customer_id``: every part of one starts the same part of the other);
- **the values**, over the first ``SAMPLE_ROWS`` rows of both versions read
  as text: the share of rows whose values are equal at the same position,
  or, when rows moved, the share of the new column's distinct values the
  old column held.

``confidence = 0.35 × names + 0.65 × values``; pairs at ``MIN_CONFIDENCE``
or more are suggested, best first, each column in at most one. The
suggestion's ``from`` is the file's column and ``to`` the table's:
``options.column_map`` takes them as they are on the next upload.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from core.objects import Schema, TableEntry, get_manifest, get_schema
from core.scan import Scan
from core.schema import arrow_type
from core.storage import ObjectStore

SAMPLE_ROWS = 50_000
MIN_CONFIDENCE = 0.5
_PART = re.compile(r"[a-z]+|\d+")


def name_similarity(a: str, b: str) -> float:
    na, nb = re.sub(r"[^a-z0-9]", "", a.lower()), re.sub(r"[^a-z0-9]", "", b.lower())
    ratio = SequenceMatcher(None, na, nb).ratio()
    xs, ys = _PART.findall(a.lower()), _PART.findall(b.lower())
    abbreviated = (
        xs
        and len(xs) == len(ys)
        and xs != ys
        and all(x.startswith(y) or y.startswith(x) for x, y in zip(xs, ys, strict=True))
    )
    return round(max(ratio, 0.9) if abbreviated else ratio, 3)


def _text(store: ObjectStore, entry: TableEntry, schema: Schema, names: list[str]) -> pa.Table:
    types = {c.name: c.type for c in schema.columns}
    read = pa.schema([pa.field(n, arrow_type(types[n])) for n in names])
    scan = Scan(store, get_manifest(store, entry.manifest), names, schema=read, limit=SAMPLE_ROWS)
    parts = list(scan)
    t = pa.concat_tables(parts) if parts else read.empty_table()
    return pa.table({n: pc.cast(t.column(n), pa.large_string()) for n in names})


def _values(old: pa.ChunkedArray, new: pa.ChunkedArray) -> tuple[float, str]:
    n = min(len(old), len(new))
    if n == 0:
        return 0.0, "no rows to compare"
    a, b = old.slice(0, n), new.slice(0, n)
    same = pc.equal(a, b)
    both_null = pc.and_(pc.is_null(a), pc.is_null(b))
    equal = pc.sum(pc.or_(pc.fill_null(same, False), both_null)).as_py() or 0
    by_row = equal / n
    distinct = pc.unique(new.drop_null())
    shared = (
        (pc.sum(pc.is_in(distinct, value_set=pc.unique(old.drop_null()))).as_py() or 0)
        / len(distinct)
        if len(distinct)
        else 0.0
    )
    if by_row >= shared:
        return by_row, f"same values in {100 * by_row:.1f} % of rows"
    return shared, f"{100 * shared:.1f} % of its values are the old column's"


def suggestions(store: ObjectStore, before: TableEntry, after: TableEntry) -> list[dict[str, Any]]:
    """What the change from ``before`` to ``after`` (a table's versions)
    probably meant: renames (``{from, to, confidence, reason, kind}``) and
    retypes; empty when the columns kept their names and types."""
    old_s, new_s = get_schema(store, before.schema), get_schema(store, after.schema)
    old = {c.name: c.type for c in old_s.columns}
    new = {c.name: c.type for c in new_s.columns}
    out: list[dict[str, Any]] = [
        {
            "kind": "retype",
            "from": n,
            "to": n,
            "confidence": 1.0,
            "reason": f"{n} was {old[n]} and is now {t}; to keep {old[n]}, "
            f'upload with options.column_types {{"{n}": "{old[n]}"}}',
        }
        for n, t in new.items()
        if n in old and old[n] != t
    ]
    removed = [n for n in old if n not in new]
    added = [n for n in new if n not in old]
    if not removed or not added or len(removed) * len(added) > 400:
        return out
    was, now = _text(store, before, old_s, removed), _text(store, after, new_s, added)
    pairs = []
    for a in added:
        for r in removed:
            names = name_similarity(a, r)
            values, why = _values(was.column(r), now.column(a))
            confidence = round(0.35 * names + 0.65 * values, 3)
            if confidence >= MIN_CONFIDENCE:
                pairs.append((confidence, a, r, why, names))
    taken: set[str] = set()
    for confidence, a, r, why, names in sorted(pairs, reverse=True):
        if a in taken or r in taken:
            continue
        taken |= {a, r}
        similar = f"; names {100 * names:.0f} % alike" if names >= 0.5 else ""
        out.append(
            {
                "kind": "rename",
                "from": a,
                "to": r,
                "confidence": confidence,
                "reason": why + similar,
            }
        )
    return out

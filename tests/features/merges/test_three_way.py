"""Three-way merges of random, non-conflicting edits on both sides.

Each side edits its own rows of a base table (modify, delete, insert after a
row neither side removes). Whatever the pairing of rows into modifications,
the merge must hold exactly the rows the two edits leave (as a multiset),
keep the surviving base rows in base order, keep each side's inserted rows
in that side's order, and report no conflict. A merged row is read back
from storage, so the manifest the merge builds is checked too.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.objects import Commit, Schema, TableEntry, put_object
from tests.features.compare.test_align import COLUMNS, _chunk, _manifest, store


def _commit(rows: list[tuple[Any, ...]], parents: tuple[str, ...] = ()) -> Commit:
    ids: list[tuple[str, int]] = []
    if rows:
        cid = _chunk(rows, COLUMNS)
        ids = [(cid, i) for i in range(len(rows))]
    m = _manifest(ids)
    s = Schema(tuple(COLUMNS))
    put_object(store(), "manifest", m)
    put_object(store(), "schema", s)
    return Commit(parents, {"t": TableEntry(s.id, m.id, len(rows))}, "a", "2026-01-01", "m")


def _edit(
    base: list[tuple[Any, ...]],
    inserts: dict[int, list[tuple[Any, ...]]],
    mods: dict[int, tuple[Any, ...]],
    deletes: set[int],
) -> list[tuple[Any, ...]]:
    out = list(inserts.get(-1, []))
    for i, row in enumerate(base):
        if i not in deletes:
            out.append(mods.get(i, row))
        out.extend(inserts.get(i, []))
    return out


@st.composite
def scenario(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(0, 30))
    base = [(i, f"r{i}") for i in range(n)]
    owner = [draw(st.sampled_from(["none", "ours", "theirs"])) for _ in range(n)]
    sides: dict[str, dict[str, Any]] = {}
    fresh = iter(range(1000, 10_000))
    for side in ("ours", "theirs"):
        mods, deletes = {}, set()
        for i in range(n):
            if owner[i] == side:
                if draw(st.booleans()):
                    deletes.add(i)
                else:
                    mods[i] = (next(fresh), f"{side}{i}")
        inserts: dict[int, list[tuple[Any, ...]]] = {}
        anchors = [-1] + [i for i in range(n) if owner[i] == "none"]
        for _ in range(draw(st.integers(0, 3))):
            a = draw(st.sampled_from(anchors))
            inserts.setdefault(a, []).append((next(fresh), f"{side}+"))
        sides[side] = {"mods": mods, "deletes": deletes, "inserts": inserts}
    return {"base": base, "sides": sides, "keyed": draw(st.booleans())}


@pytest.mark.usefixtures("stack")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_disjoint_edits_merge_cleanly(sc: dict[str, Any]) -> None:
    from features.compare.service import version
    from features.merges.three_way import three_way

    base = sc["base"]
    edited = {
        side: _edit(base, s["inserts"], s["mods"], s["deletes"]) for side, s in sc["sides"].items()
    }
    b = _commit(base)
    o, t = _commit(edited["ours"], (b.id,)), _commit(edited["theirs"], (b.id,))
    key = ["a"] if sc["keyed"] else None
    tables, conflicts, count = three_way(store(), b, o, t, key, "fail")
    assert count == 0, conflicts
    merged_commit = Commit((o.id, t.id), tables, "a", "2026-01-01", "merge")
    v = version(store(), merged_commit, "t")
    table = v.rows.read(np.arange(v.manifest.row_count), ["a", "b"])
    got = [(r["a"], r["b"]) for r in table.to_pylist()]
    # the rows both edits leave
    ours, theirs = sc["sides"]["ours"], sc["sides"]["theirs"]
    want = [
        theirs["mods"].get(i, ours["mods"].get(i, row))
        for i, row in enumerate(base)
        if i not in ours["deletes"] and i not in theirs["deletes"]
    ]
    added = {
        side: [r for rows in s["inserts"].values() for r in rows] for side, s in sc["sides"].items()
    }
    assert Counter(got) == Counter(want + added["ours"] + added["theirs"])

    # order: surviving base rows, and each side's inserts, keep their order
    def order_of(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        keep = set(rows)
        return [r for r in got if r in keep]

    assert order_of(want) == want
    for side in ("ours", "theirs"):
        mine = [r for r in edited[side] if r in set(added[side])]
        assert order_of(mine) == mine

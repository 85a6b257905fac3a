"""Compare against a brute-force reference on random edit scripts.

The reference below implements the rules of ``features.compare.align`` row by
row over Python values (no hashes, no pieces, no numpy); the service must
give exactly the same change list, in the same order, for keyed and unkeyed
tables, with duplicates, moved rows, re-used stored rows and schema changes.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.chunks import write_chunk
from core.objects import Manifest, Piece, Schema
from core.schema import Column, arrow_type

START, END = -1, 10**9


def store() -> Any:
    from core.storage import get_store

    return get_store()


def _chunk(rows: list[tuple[Any, ...]], columns: list[Column]) -> str:
    table = pa.table(
        {c.name: pa.array([r[i] for r in rows], arrow_type(c.type)) for i, c in enumerate(columns)}
    )
    with tempfile.TemporaryDirectory() as tmp:
        cid, _ = write_chunk(store(), table, columns, tmp_dir=Path(tmp))
    return cid


def _manifest(identities: list[tuple[str, int]]) -> Manifest:
    """Stored rows in table order -> pieces (runs of consecutive rows of a chunk)."""
    pieces: list[Piece] = []
    for cid, row in identities:
        last = pieces[-1] if pieces else None
        if last and last.chunk == cid and last.start + last.length == row:
            pieces[-1] = Piece(cid, last.start, last.length + 1)
        else:
            pieces.append(Piece(cid, row, 1))
    return Manifest(tuple(pieces))


def reference(
    base: list[tuple[Any, ...]],
    base_ids: list[tuple[str, int]],
    head: list[tuple[Any, ...]],
    head_ids: list[tuple[str, int]],
    key: int | None,
) -> list[tuple[str, int, int]]:
    """(op, base position or -1, head position or -1) in head order."""
    partner_h: dict[int, int] = {}  # base pos -> head pos
    partner_b: dict[int, int] = {}
    # rule 1: same stored row, k-th use with k-th use
    uses_b, uses_h = defaultdict(list), defaultdict(list)
    for i, ident in enumerate(base_ids):
        uses_b[ident].append(i)
    for i, ident in enumerate(head_ids):
        uses_h[ident].append(i)
    for ident, bs in uses_b.items():
        for x, y in zip(bs, uses_h.get(ident, []), strict=False):
            partner_h[x], partner_b[y] = y, x
    # rule 2: same values, k-th remaining copy with k-th remaining copy
    waiting: dict[tuple[Any, ...], deque[int]] = defaultdict(deque)
    for x, row in enumerate(base):
        if x not in partner_h:
            waiting[row].append(x)
    for y, row in enumerate(head):
        if y not in partner_b and waiting[row]:
            x = waiting[row].popleft()
            partner_h[x], partner_b[y] = y, x
    un_b = [x for x in range(len(base)) if x not in partner_h]
    un_h = [y for y in range(len(head)) if y not in partner_b]

    def prev_matched(pos: int, matched: dict[int, int]) -> int:
        return max((p for p in matched if p < pos), default=START)

    def next_matched(pos: int, matched: dict[int, int]) -> int:
        return min((p for p in matched if p > pos), default=END)

    # rule 3
    pairs: list[tuple[int, int]] = []
    if key is not None:
        by_key: dict[Any, deque[int]] = defaultdict(deque)
        for x in un_b:
            by_key[base[x][key]].append(x)
        for y in un_h:
            if by_key[head[y][key]]:
                pairs.append((by_key[head[y][key]].popleft(), y))
    else:
        gaps_b: dict[int, list[int]] = defaultdict(list)  # by previous matched base row
        for x in un_b:
            gaps_b[prev_matched(x, partner_h)].append(x)
        gaps_h: dict[int, list[int]] = defaultdict(list)
        for y in un_h:
            gaps_h[prev_matched(y, partner_b)].append(y)
        for pb, xs in gaps_b.items():
            ph = START if pb == START else partner_h[pb]
            if ph not in gaps_h:
                continue
            nb, nh = next_matched(xs[-1], partner_h), next_matched(gaps_h[ph][-1], partner_b)
            if (END if nb == END else partner_h[nb]) != nh:
                continue
            pairs.extend(zip(xs, gaps_h[ph], strict=False))
    paired_b = {x for x, _ in pairs}
    paired_h = {y for _, y in pairs}
    changes = []
    for x in un_b:
        if x not in paired_b:
            pb = prev_matched(x, partner_h)
            anchor = 0 if pb == START else partner_h[pb] + 1
            changes.append(((anchor, 0, x), ("remove", x, -1)))
    for y in un_h:
        if y not in paired_h:
            changes.append(((y, 1, y), ("add", -1, y)))
    for x, y in pairs:
        changes.append(((y, 1, y), ("modify", x, y)))
    return [c for _, c in sorted(changes)]


VALUES = st.tuples(st.integers(0, 3), st.sampled_from(["x", "y", None]))
COLUMNS = [Column("a", "integer"), Column("b", "string")]


@st.composite
def scenario(draw: Any) -> dict[str, Any]:
    base = draw(st.lists(VALUES, max_size=25))
    # edit script over (values, where-from) items; "keep" rows may re-use base storage
    items: list[tuple[tuple[Any, ...], int | None]] = [(r, i) for i, r in enumerate(base)]
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["delete", "insert", "modify", "move", "copy"]))
        if op == "insert" or not items:
            items.insert(draw(st.integers(0, len(items))), (draw(VALUES), None))
            continue
        i = draw(st.integers(0, len(items) - 1))
        if op == "delete":
            items.pop(i)
        elif op == "modify":
            items[i] = (draw(VALUES), None)
        elif op == "move":
            it = items.pop(i)
            items.insert(draw(st.integers(0, len(items))), it)
        else:  # the same stored row used twice
            items.insert(draw(st.integers(0, len(items))), items[i])
    return {
        "base": base,
        "items": items,
        "cuts": draw(st.lists(st.integers(1, 24), max_size=2)),
        "share": draw(st.booleans()),
        "keyed": draw(st.booleans()),
    }


def _versions(sc: dict[str, Any], head_columns: list[Column] | None = None) -> Any:
    from core.objects import TableEntry
    from features.compare.rows import TableRows
    from features.compare.service import TableVersion

    base = sc["base"]
    # base stored in a few chunks
    cuts = sorted({c for c in sc["cuts"] if c < len(base)})
    base_ids: list[tuple[str, int]] = []
    for lo, hi in zip([0, *cuts], [*cuts, len(base)], strict=True):
        if hi > lo:
            cid = _chunk(base[lo:hi], COLUMNS)
            base_ids.extend((cid, k) for k in range(hi - lo))
    head_columns = head_columns or COLUMNS
    head_rows = [r for r, _ in sc["items"]]
    if sc["share"] and head_columns == COLUMNS:
        fresh = [r for r, src in sc["items"] if src is None]
        fresh_cid = _chunk(fresh, COLUMNS) if fresh else ""
        head_ids, k = [], 0
        for _, src in sc["items"]:
            if src is None:
                head_ids.append((fresh_cid, k))
                k += 1
            else:
                head_ids.append(base_ids[src])
    else:
        cid = _chunk([_reshape(r, head_columns) for r in head_rows], head_columns)
        head_ids = [(cid, k) for k in range(len(head_rows))]

    def version(ids: list[tuple[str, int]], columns: list[Column]) -> TableVersion:
        m, s = _manifest(ids), Schema(tuple(columns))
        entry = TableEntry(s.id, m.id, m.row_count)
        return TableVersion(entry, s, m, TableRows(store(), m, s))

    return (
        version(base_ids, COLUMNS),
        base_ids,
        version(head_ids, head_columns),
        head_ids,
    )


def _reshape(row: tuple[Any, ...], columns: list[Column]) -> tuple[Any, ...]:
    """A row of COLUMNS as the head schema stores it (renamed/added/retyped)."""
    by = {"a": row[0], "b": row[1], "a2": row[0], "c": 7, "b_text": row[1]}
    out = []
    for c in columns:
        v = by[c.name]
        if c.type == "string" and isinstance(v, int):
            v = str(v)
        out.append(v)
    return tuple(out)


def _check(sc: dict[str, Any], head_columns: list[Column] | None = None) -> None:
    from features.compare.service import diff_table

    base_v, base_ids, head_v, head_ids = _versions(sc, head_columns)
    key = ["a"] if sc["keyed"] else None
    td = diff_table(base_v, head_v, key)
    got = [
        ({0: "remove", 1: "add", 2: "modify"}[o], b, h)
        for o, b, h in zip(td.op.tolist(), td.base_pos.tolist(), td.head_pos.tolist(), strict=True)
    ]
    head_rows = [r for r, _ in sc["items"]]
    # rows compare on the columns both versions have (a rename undetected
    # when the column's data changed too leaves just "a")
    keep = [i for i, c in enumerate(COLUMNS) if c.name in td.schema.shared]
    want = reference(
        [tuple(r[i] for i in keep) for r in sc["base"]],
        base_ids,
        [tuple(r[i] for i in keep) for r in head_rows],
        head_ids,
        0 if sc["keyed"] else None,
    )
    assert got == want
    s = td.summary()
    assert s["unchanged"] + s["removed"] + s["modified"] == len(sc["base"])
    assert s["unchanged"] + s["added"] + s["modified"] == len(head_rows)


@pytest.mark.usefixtures("stack")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_matches_the_reference(sc: dict[str, Any]) -> None:
    _check(sc)


@pytest.mark.usefixtures("stack")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_hashes_read_a_chunk_at_a_time_match_the_reference(sc: dict[str, Any]) -> None:
    """``TableRows.stored_hashes`` holds a batch of chunks' hash columns at a
    time (a 100M-row table's would be 1.6 GB): batches of one chunk give the
    same answers."""
    from features.compare import rows

    old, rows.HASH_BATCH = rows.HASH_BATCH, 1
    try:
        _check(sc)
    finally:
        rows.HASH_BATCH = old


@pytest.mark.usefixtures("stack")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario(), st.sampled_from(["renamed", "added", "retyped"]))
def test_schema_changes_compare_on_shared_columns(sc: dict[str, Any], change: str) -> None:
    # the head keeps the base's values under another schema; rows compare on
    # the columns both have (a retyped column as text), so the reference
    # over the original values still applies
    head_columns = {
        "renamed": [Column("a", "integer"), Column("b_text", "string")],
        "added": [Column("a", "integer"), Column("b", "string"), Column("c", "integer")],
        "retyped": [Column("a", "string"), Column("b", "string")],
    }[change]
    sc = {**sc, "share": False}
    _check(sc, head_columns)


@st.composite
def piece_lists(draw: Any) -> Manifest:
    """Pieces of up to three chunks: ascending runs as re-uploads make them,
    sometimes out of order or overlapping (rows used twice)."""
    pieces, at = [], {c: 0 for c in "abc"}
    for _ in range(draw(st.integers(0, 30))):
        c = draw(st.sampled_from("abc"))
        start = at[c] + draw(st.integers(0, 3))
        if draw(st.integers(0, 9)) == 0:  # now and then, back to an earlier row
            start = draw(st.integers(0, start))
        n = draw(st.integers(0, 4))
        pieces.append(Piece(c * 64, start, n))
        at[c] = start + n
    return Manifest(tuple(pieces))


def test_a_chunk_named_twice_takes_the_general_path() -> None:
    """An import may list a chunk twice (a new chunk with exactly the rows,
    hence the id, of one its parent has): rows 0..4 of A used twice in head
    match base's rows 0..4 once, not twice."""
    from features.compare import align

    a = "a" * 64
    base = Manifest((Piece(a, 0, 10),))
    ids = [a, a]
    head = Manifest.from_columns(
        ids,
        np.array([0, 1, 0, 1]),
        np.array([0, 0, 5, 5]),
        np.array([5, 5, 5, 5]),
    )
    assert align._walk(base.columns, head.columns) is None  # noqa: SLF001
    assert align.identity_segments(base, head).tolist() == [[0, 0, 5], [5, 10, 5]]


@given(piece_lists(), piece_lists())
@settings(max_examples=300, deadline=None)
def test_one_pass_rule_1_equals_the_general_merge(base: Manifest, head: Manifest) -> None:
    """Where both sides' shared chunks ascend, the one-pass walk gives the
    general path's runs exactly; elsewhere it declines."""
    from features.compare import align

    walked = align._walk(base.columns, head.columns)  # noqa: SLF001
    general = align._general(base, head)  # noqa: SLF001
    if walked is not None:
        assert walked.tolist() == general.reshape(-1, 3).tolist()

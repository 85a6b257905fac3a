"""An import that matched every row of a re-upload against the version it
replaces records that the fresh rows equal none left out (decision 0041);
the compare of the two then skips matching by hash and must give the same
answer as with it (``align``'s rule 2)."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import polars as pl
import pytest

from core import db
from core.objects import Manifest, get_commit
from core.storage import get_store
from features.compare import service as compare_service
from features.imports import disjoint, lines
from features.imports.disjoint import _left_out
from tests.conftest import import_csv, make_dataset
from tests.features.imports.test_concurrent_writers import ctx  # noqa: F401

HEAD = b"id,name,x\n"


def _csv(rows: list[tuple[int, str, str]]) -> bytes:
    return HEAD + b"".join(f"{i},{n},{x}\n".encode() for i, n, x in rows)


def _first() -> list[tuple[int, str, str]]:
    # duplicates on purpose: rows 0-49 twice over, the k-th copy against the k-th
    return [(i % 2950, f"n{i % 2950}", f"{(i % 2950) * 0.5}") for i in range(3000)]


def test_rows_left_out_are_what_the_old_version_uses_more_often() -> None:
    ids = [f"{i:064x}" for i in range(3)]
    # chunk 0 rows 0-9, then chunk 0 rows 5-7 again (used twice), chunk 1 rows 0-4
    old = Manifest.from_columns(ids[:2], [0, 0, 1], [0, 5, 0], [10, 3, 5])
    runs = pl.DataFrame(
        {"chunk": [0, 2, 0, 1], "start": [0, 0, 5, 1], "length": [6, 4, 2, 4]},
        schema={"chunk": pl.UInt64, "start": pl.UInt64, "length": pl.UInt64},
    )
    got = {c: rows.tolist() for c, rows in _left_out(old, runs).items()}
    # chunk 0: rows 0-5 and 5-6 used (row 5 twice); left: 6, 7 (twice, once), 8, 9
    assert got == {0: [6, 7, 8, 9], 1: [0]}
    everything = _left_out(old, runs.clear())
    assert everything is not None
    assert {c: r.tolist() for c, r in everything.items()} == {0: list(range(10)), 1: list(range(5))}


def test_a_check_too_big_or_unreadable_claims_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Review of issue 19: the check is an optional shortcut; its limits
    hold before anything is read, and a failure costs the claim, not the
    import."""
    ids = [f"{i:064x}" for i in range(2)]
    old = Manifest.from_columns(ids[:1], [0], [0], [10])
    runs = pl.DataFrame(
        {"chunk": [0, 1], "start": [0, 0], "length": [5, 5]},
        schema={"chunk": pl.UInt64, "start": pl.UInt64, "length": pl.UInt64},
    )
    store = get_store()
    assert not disjoint.fresh_rows_are_new(store, old, runs, [ids[1]], 5)  # no such chunk
    monkeypatch.setattr(disjoint, "MAX_FRESH", 4)
    assert not disjoint.fresh_rows_are_new(store, old, runs, [ids[1]], 5)
    monkeypatch.setattr(disjoint, "MAX_LEFT_OUT", 4)
    assert disjoint._left_out(old, runs) is None


def _hint(before: str, after: str) -> bool:
    with db.transaction() as conn:
        row = conn.execute(
            "SELECT count(*) AS n FROM disjoint_rows"
            " WHERE base_manifest_id = %(b)s AND head_manifest_id = %(h)s",
            {"b": before, "h": after},
        ).fetchone()
    return bool(row and row["n"])


def _same_answer_both_ways(base_id: str, head_id: str) -> dict[str, int]:
    store = get_store()
    base, head = compare_service.versions(
        store, get_commit(store, base_id), get_commit(store, head_id), "t"
    )
    assert base.entry is not None and head.entry is not None
    assert _hint(base.entry.manifest, head.entry.manifest)
    slow = compare_service.diff_table(base, head, None)
    fast = compare_service.diff_table(base, head, None, disjoint=True)
    for field in ("op", "base_pos", "head_pos", "seg"):
        assert np.array_equal(getattr(slow, field), getattr(fast, field)), field
    assert slow.matched == fast.matched
    return fast.summary()


def _reupload(ctx: dict[str, Any], by_lines: bool) -> dict[str, Any]:  # noqa: F811
    ds = make_dataset(ctx["c"], ctx["h"])["id"]
    rows = _first()
    v1 = import_csv(ctx["c"], ctx["h"], ds, _csv(rows), filename="t.csv")
    assert v1["state"] == "succeeded", v1
    edited = list(rows)
    edited[10] = (10, "edited", "5.0")  # a modification
    edited[2990] = (3, "n3", "1.5")  # a third copy of row 3 (written fresh)
    del edited[1500]  # a removal
    edited.insert(700, (9999, "new", "0.25"))  # an addition
    del edited[2960]  # one copy of a duplicated row
    if not by_lines:
        get_store().delete(lines.index_key(ds, "main", "t"))
    v2 = import_csv(ctx["c"], ctx["h"], ds, _csv(edited), filename="t.csv")
    assert v2["state"] == "succeeded", v2
    assert ("parsed_rows" in v2["result"]) is by_lines
    return {"ds": ds, "v1": v1["commit_id"], "v2": v2["commit_id"]}


@pytest.mark.parametrize("by_lines", [True, False], ids=["by-lines", "full"])
def test_a_reupload_records_that_its_fresh_rows_are_new(
    ctx: dict[str, Any],  # noqa: F811
    by_lines: bool,
) -> None:
    got = _reupload(ctx, by_lines)
    summary = _same_answer_both_ways(got["v1"], got["v2"])
    assert summary == {"added": 1, "removed": 2, "modified": 2, "unchanged": 2996}
    r = ctx["c"].get(
        f"/api/v1/datasets/{got['ds']}/compare/{got['v1']}...{got['v2']}",
        params={"table": "t", "limit": 0},
        headers=ctx["h"],
    )
    assert r.status_code == 200, r.text
    assert r.json()["summary"] == summary
    # what one dataset's import recorded is not taken for another's versions
    store = get_store()
    base, head = compare_service.versions(
        store, get_commit(store, got["v1"]), get_commit(store, got["v2"]), "t"
    )
    with db.transaction() as conn:
        assert compare_service._disjoint(conn, uuid.UUID(got["ds"]), base, head)
        assert compare_service._disjoint(conn, uuid.UUID(got["ds"]), head, base)
        assert not compare_service._disjoint(conn, uuid.uuid4(), base, head)


def test_a_line_written_otherwise_holding_a_row_left_out_records_nothing(
    ctx: dict[str, Any],  # noqa: F811
) -> None:
    """Lines pair by bytes: "2.50" is not the line "2.5", yet the same row.
    The compare must still find it unchanged, so no hint may be recorded."""
    ds = make_dataset(ctx["c"], ctx["h"])["id"]
    rows = _first()
    v1 = import_csv(ctx["c"], ctx["h"], ds, _csv(rows), filename="t.csv")
    edited = list(rows)
    edited[100] = (100, "n100", "50.00")  # was 50.0: another line, the same row
    edited[2000] = (2000, "edited", "5.0")
    v2 = import_csv(ctx["c"], ctx["h"], ds, _csv(edited), filename="t.csv")
    assert v2["state"] == "succeeded" and v2["result"]["parsed_rows"] == 2, v2
    store = get_store()
    before = get_commit(store, v1["commit_id"]).tables["t"].manifest
    after = get_commit(store, v2["commit_id"]).tables["t"].manifest
    assert not _hint(before, after)
    r = ctx["c"].get(
        f"/api/v1/datasets/{ds}/compare/{v1['commit_id']}...{v2['commit_id']}",
        params={"table": "t", "limit": 0},
        headers=ctx["h"],
    )
    assert r.json()["summary"] == {"added": 0, "removed": 0, "modified": 1, "unchanged": 2999}

"""Rename detection reads columns, so it is bounded (issue 15, "Expensive
anonymous work"): a version that drops 40 columns and adds 40 of the same
type made 1,600 whole-column comparisons before; now at most
MAX_RENAME_CHECKS."""

from __future__ import annotations

from core.objects import Schema
from core.schema import Column
from features.compare import schema_diff


def test_rename_detection_compares_a_bounded_number_of_pairs() -> None:
    base = Schema(tuple(Column(f"old{i}", "integer") for i in range(40)))
    head = Schema(tuple(Column(f"new{i}", "integer") for i in range(40)))
    calls: list[tuple[str, str]] = []

    def same_data(a: str, b: str) -> bool:
        calls.append((a, b))
        return False

    out = schema_diff.diff(base, head, same_data)
    assert len(calls) == schema_diff.MAX_RENAME_CHECKS
    assert len(out.removed) == 40 and len(out.added) == 40 and not out.renamed


def test_a_rename_is_still_found_within_the_bound() -> None:
    base = Schema((Column("id", "integer"), Column("name", "string")))
    head = Schema((Column("id", "integer"), Column("full_name", "string")))
    out = schema_diff.diff(base, head, lambda a, b: (a, b) == ("name", "full_name"))
    assert out.renamed == [{"from": "name", "to": "full_name"}]

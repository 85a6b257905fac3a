"""The commands that tell what data holds: ``dsa search``, ``dsa stats``,
``dsa quality``."""

from __future__ import annotations

import argparse
from typing import Any

from dsa.client import Client

COMMANDS = ("search", "stats", "quality")


def cmd_search(args: argparse.Namespace) -> int:
    from dsa.cli import _print_json, _table

    with Client() as c:
        got = c.search(" ".join(args.query), tags=args.tag, per_page=args.limit)
    if args.json:
        _print_json(got)
        return 0
    rows = [
        [
            h["name"],
            ", ".join(h["tags"]),
            "; ".join(f"{m['field']}: {m['text'][:40]}" for m in h["matches"][:3]),
        ]
        for h in got["items"]
    ]
    _table(f"{got['total']:,} datasets", ["dataset", "tags", "matched"], rows)
    return 0


def _short(v: Any) -> str:
    return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def cmd_stats(args: argparse.Namespace) -> int:
    from dsa.cli import _print_json, _table, split_target

    dataset, ref = split_target(args.target)
    assert ref is not None
    with Client() as c:
        got = c.stats(dataset, ref, args.table)
    if args.json:
        _print_json(got)
        return 0
    rows = [
        [
            col["name"],
            col["type"],
            f"{col['null_count']:,}",
            ("≈" if col["distinct_approx"] else "") + f"{col['distinct_count']:,}",
            _short(col.get("min")),
            _short(col.get("max")),
            _short(col.get("mean")),
            ", ".join(f"{t['value']} ({t['count']:,})" for t in (col.get("top_values") or [])[:3]),
        ]
        for col in got["columns"]
    ]
    title = f"{got['table']} at {got['commit_id'][:12]}: {got['row_count']:,} rows"
    _table(title, ["column", "type", "nulls", "distinct", "min", "max", "mean", "top"], rows)
    return 0


def cmd_quality(args: argparse.Namespace) -> int:
    from dsa.cli import _print_json, _table, split_target

    dataset, ref = split_target(args.target)
    assert ref is not None
    with Client() as c:
        got = c.quality(dataset, ref)
    if args.json:
        _print_json(got)
    else:
        rows = [
            ["✓" if r["passed"] else "✗", r["name"], r["check"], f"{r['failing_rows']:,}",
             r.get("detail") or ""]
            for r in got["results"]
        ]  # fmt: skip
        verdict = "passes" if got["passed"] else "fails"
        title = f"score {got['score']:g} (threshold {got['threshold']:g}): {verdict}"
        _table(title, ["", "rule", "check", "failing rows", "why"], rows)
    return 0 if got["passed"] else 3


def register(add: Any) -> None:
    p = add("search", "find datasets by name, column, tag or readme", cmd_search)
    p.add_argument("query", nargs="*", default=[])
    p.add_argument("--tag", action="append", help="only datasets with this tag (repeatable)")
    p.add_argument("-n", "--limit", type=int, default=20)
    p = add("stats", "column statistics of a table (DATASET[@REF])", cmd_stats)
    p.add_argument("target", metavar="DATASET[@REF]")
    p.add_argument("--table")
    p = add("quality", "the quality report of a version; exit 3 below the threshold", cmd_quality)
    p.add_argument("target", metavar="DATASET[@REF]")

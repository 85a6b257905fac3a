"""The checks of quality rules, run over a commit's tables.

Each table is read once, window by window (``core.scan``), with only the
columns its rules name, and every column rule is a vectorised Arrow kernel
(``pyarrow.compute``: no polars here, so the worker that evaluates a gate
before an import lands can still fork import children). ``unique`` keeps
its column's values until the end (one column in memory).

Nulls fail ``not_null`` only: the value checks (``min``, ``max``,
``between``, ``in``, ``regex``) pass a null, as SQL's CHECK constraints do;
combine them with ``not_null`` to forbid nulls too.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from core import deadline
from core.objects import Commit, TableEntry, get_manifest, get_schema
from core.scan import Scan
from core.schema import arrow_type, kind_of
from core.storage import ObjectStore
from features.data import service as data_service
from features.quality.errors import InvalidRule

SAMPLE = 5
COLUMN_CHECKS = {"not_null", "unique", "min", "max", "between", "in", "regex"}
ORDERED = {"integer", "float", "date", "datetime", "datetime_tz", "string", "decimal", "time"}
ARGS: dict[str, tuple[str, ...]] = {
    "min": ("value",),
    "max": ("value",),
    "between": ("min", "max"),
    "in": ("values",),
    "regex": ("pattern",),
    "row_count_min": ("min",),
    "row_count_change_max_pct": ("max_pct",),
    "schema": ("columns",),
}


def validate(rule: dict[str, Any]) -> None:
    """Refuse a rule that can never run (``InvalidRule`` naming it)."""
    check, args = rule["check"], rule.get("args") or {}
    name = rule["name"]
    missing = [a for a in ARGS.get(check, ()) if a not in args]
    if missing:
        raise InvalidRule(f"rule {name!r}: {check} needs args {', '.join(missing)}", rule=name)
    if check in COLUMN_CHECKS and not rule.get("column"):
        raise InvalidRule(f"rule {name!r}: {check} needs a column", rule=name)
    if check == "in" and not isinstance(args["values"], list):
        raise InvalidRule(f"rule {name!r}: in needs a list of values", rule=name)
    if check == "regex":
        try:
            pc.match_substring_regex(pa.array([""]), f"^(?:{args['pattern']})$")
        except (pa.ArrowInvalid, TypeError) as exc:
            detail = f"rule {name!r}: the pattern does not compile: {exc}"
            raise InvalidRule(detail, rule=name) from None
    if check in ("row_count_min", "row_count_change_max_pct"):
        key = ARGS[check][0]
        if not isinstance(args[key], (int, float)) or isinstance(args[key], bool):
            raise InvalidRule(f"rule {name!r}: {key} must be a number", rule=name)
    if check == "schema" and not (
        isinstance(args["columns"], list)
        and all(isinstance(c, dict) and "name" in c and "type" in c for c in args["columns"])
    ):
        raise InvalidRule(f"rule {name!r}: columns must be [{{name, type}}, …]", rule=name)


def evaluate(
    store: ObjectStore, commit: Commit, parent: Commit | None, rules: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each rule's result at ``commit`` (``parent``: its first parent, for
    ``row_count_change_max_pct``), in the rules' order."""
    out: dict[int, dict[str, Any]] = {}
    by_table: dict[str, list[int]] = {}
    for i, r in enumerate(rules):
        by_table.setdefault(r["table"], []).append(i)
    for table, idx in by_table.items():
        entry = commit.tables.get(table)
        if entry is None:
            for i in idx:
                out[i] = _result(rules[i], False, 0, f"table {table!r} does not exist")
            continue
        out.update(_table(store, entry, parent, {i: rules[i] for i in idx}))
    return [out[i] for i in range(len(rules))]


def _result(
    rule: dict[str, Any],
    passed: bool,
    failing: int,
    detail: str | None = None,
    sample: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "name": rule["name"],
        "table": rule["table"],
        "column": rule.get("column"),
        "check": rule["check"],
        "weight": float(rule.get("weight", 1.0)),
        "passed": passed,
        "failing_rows": failing,
        "detail": None if passed else detail,
        "sample": sample or [],
    }


def _table(
    store: ObjectStore, entry: TableEntry, parent: Commit | None, rules: dict[int, dict[str, Any]]
) -> dict[int, dict[str, Any]]:
    schema = get_schema(store, entry.schema)
    types = {c.name: c.type for c in schema.columns}
    out: dict[int, dict[str, Any]] = {}
    runners: dict[int, _Column] = {}
    for i, r in rules.items():
        check = r["check"]
        if check in COLUMN_CHECKS:
            col = r["column"]
            if col not in types:
                out[i] = _result(r, False, 0, f"column {col!r} does not exist")
                continue
            try:
                runners[i] = _Column(r, types[col])
            except InvalidRule as exc:
                out[i] = _result(r, False, 0, exc.detail)
        else:
            out[i] = _whole(r, entry, parent, types)
    if runners:
        names = sorted({r.column for r in runners.values()})
        read = pa.schema([pa.field(n, arrow_type(types[n])) for n in names])
        scan = Scan(store, get_manifest(store, entry.manifest), names, schema=read)
        for w in scan.windows():
            deadline.check()  # a report asked for by a request stops at its deadline
            t = scan.read(w)
            for runner in runners.values():
                runner.add(t.column(runner.column), w.lo)
        out.update({i: runner.result() for i, runner in runners.items()})
    return out


def _whole(
    rule: dict[str, Any], entry: TableEntry, parent: Commit | None, types: dict[str, str]
) -> dict[str, Any]:
    """The table-wide checks: row counts and the schema."""
    check, args, rows = rule["check"], rule.get("args") or {}, entry.row_count
    if check == "row_count_min":
        need = int(args["min"])
        return _result(rule, rows >= need, max(0, need - rows), f"{rows} rows, fewer than {need}")
    if check == "row_count_change_max_pct":
        before = parent.tables.get(rule["table"]) if parent is not None else None
        if before is None:
            return _result(rule, True, 0)
        change = abs(rows - before.row_count)
        pct = 100.0 * change / max(before.row_count, 1)
        ok = pct <= float(args["max_pct"])
        detail = f"{before.row_count} → {rows} rows: {pct:.2f} % > {args['max_pct']} %"
        return _result(rule, ok, 0 if ok else change, detail)
    problems = []
    for c in args["columns"]:
        have = types.get(c["name"])
        if have is None:
            problems.append({"column": c["name"], "problem": "missing"})
        elif have != c["type"]:
            problems.append({"column": c["name"], "problem": f"is {have}, expected {c['type']}"})
    detail = "; ".join(f"{p['column']} {p['problem']}" for p in problems)
    return _result(rule, not problems, 0, detail, problems[:SAMPLE])


class _Column:
    """One column rule, fed the table window by window."""

    def __init__(self, rule: dict[str, Any], kind: str) -> None:
        self.rule, self.kind = rule, kind
        self.column: str = rule["column"]
        self.failing = 0
        self.sample: list[dict[str, Any]] = []
        self.values: list[pa.Array] = []  # unique: the column, kept to the end
        self.mask = self._mask()

    def _value(self, v: Any) -> pa.Scalar:
        try:
            if kind_of(self.kind) == "decimal" and isinstance(v, int | float | str):
                v = decimal.Decimal(str(v))  # exact: 10.05 is the decimal 10.05
            return pa.array([v]).cast(arrow_type(self.kind))[0]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ArithmeticError):
            raise InvalidRule(
                f"{v!r} is not a value of column {self.column!r} ({self.kind})"
            ) from None

    def _mask(self) -> Callable[[pa.ChunkedArray], pa.ChunkedArray] | None:
        """The kernel giving the failing rows of a window (None: unique)."""
        check, args = self.rule["check"], self.rule.get("args") or {}
        if check in ("min", "max", "between") and kind_of(self.kind) not in ORDERED:
            raise InvalidRule(f"{check} needs an ordered column, not {self.kind}")
        if check == "not_null":
            return pc.is_null
        if check == "min":
            lo = self._value(args["value"])
            return lambda c: pc.less(c, lo)
        if check == "max":
            hi = self._value(args["value"])
            return lambda c: pc.greater(c, hi)
        if check == "between":
            lo, hi = self._value(args["min"]), self._value(args["max"])
            return lambda c: pc.or_(pc.less(c, lo), pc.greater(c, hi))
        if check == "in":
            allowed = pa.array(
                [self._value(v).as_py() for v in args["values"]], arrow_type(self.kind)
            )
            return lambda c: pc.and_(pc.invert(pc.is_in(c, value_set=allowed)), pc.is_valid(c))
        if check == "regex":
            if self.kind != "string":
                raise InvalidRule(f"regex needs a string column, not {self.kind}")
            pattern = f"^(?:{args['pattern']})$"
            return lambda c: pc.invert(pc.match_substring_regex(c, pattern))
        return None  # unique

    def add(self, column: pa.ChunkedArray, first_row: int) -> None:
        if self.mask is None:
            self.values.append(column.combine_chunks())
            return
        failing = pc.fill_null(self.mask(column), False)
        n = pc.sum(failing).as_py() or 0
        if n and len(self.sample) < SAMPLE:
            at = pc.indices_nonzero(failing).slice(0, SAMPLE - len(self.sample))
            values = data_service.column_values(column.take(at), self.kind)
            self.sample += [
                {"row": first_row + int(i), "value": v}
                for i, v in zip(at.to_pylist(), values, strict=True)
            ]
        self.failing += n

    def result(self) -> dict[str, Any]:
        if self.mask is None:
            return self._unique()
        detail = f"{self.failing} row{'s' if self.failing != 1 else ''} fail"
        return _result(self.rule, self.failing == 0, self.failing, detail, self.sample)

    def _unique(self) -> dict[str, Any]:
        """Rows whose (non-null) value another row holds too."""
        if not self.values:
            return _result(self.rule, True, 0)
        values = pa.chunked_array(self.values)
        counts = pc.value_counts(values.drop_null())
        dup = pc.filter(counts, pc.greater(counts.field("counts"), 1))
        failing = pc.sum(dup.field("counts")).as_py() or 0
        shown = data_service.column_values(
            pa.chunked_array([dup.field("values").slice(0, SAMPLE)]), self.kind
        )
        sample = [
            {"value": v, "count": int(c)}
            for v, c in zip(shown, dup.field("counts").slice(0, SAMPLE).to_pylist(), strict=True)
        ]
        detail = f"{failing} rows share a value with another row"
        return _result(self.rule, failing == 0, failing, detail, sample)

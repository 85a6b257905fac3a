"""Column statistics against polars computed independently, on random
tables cut into random windows: nulls, NaN, infinities, empty strings and
unicode included."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.schema import Column, arrow_type
from features.stats import compute
from features.stats.compute import statistics

COLUMNS = [
    Column("i", "integer"),
    Column("f", "float"),
    Column("s", "string"),
    Column("b", "boolean"),
    Column("d", "date"),
    Column("t", "datetime"),
]

ints = st.one_of(st.none(), st.integers(-(2**40), 2**40), st.sampled_from([0, 1, -1, 7]))
floats = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1.5, float("nan")]),
)
strings = st.one_of(st.none(), st.text(max_size=6), st.sampled_from(["", "é", "日本", "a"]))
bools = st.one_of(st.none(), st.booleans())
dates = st.one_of(st.none(), st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1)))
times = st.one_of(st.none(), st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2100, 1, 1)))
row = st.tuples(ints, floats, strings, bools, dates, times)


def _table(rows: list[tuple[Any, ...]]) -> pa.Table:
    return pa.table(
        {c.name: pa.array([r[i] for r in rows], arrow_type(c.type)) for i, c in enumerate(COLUMNS)}
    )


def _windows(t: pa.Table, cuts: list[int]) -> list[pa.Table]:
    edges = sorted({0, t.num_rows, *(c % (t.num_rows + 1) for c in cuts)})
    return [t.slice(a, b - a) for a, b in zip(edges, edges[1:], strict=False)] or [t]


def _expected(s: pl.Series, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"null_count": s.null_count()}
    if kind == "float":
        out["nan_count"] = int(s.is_nan().sum() or 0)
        s = s.filter(s.is_not_nan() | s.is_null())
    v = s.drop_nulls()
    out["distinct_count"] = v.n_unique()
    out["min"], out["max"] = (v.min(), v.max()) if len(v) else (None, None)
    if kind in {"integer", "float"} and len(v):
        out["mean"] = v.mean()
        out["stddev"] = v.std() if len(v) > 1 else 0.0
    return out


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        if math.isinf(a) or math.isinf(b) or math.isnan(a) or math.isnan(b):
            return str(a) == str(b)
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9 * max(1.0, abs(a), abs(b)))
    return bool(a == b)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(row, max_size=60), st.lists(st.integers(0, 60), max_size=4))
def test_statistics_match_polars(rows: list[tuple[Any, ...]], cuts: list[int]) -> None:
    t = _table(rows)
    got = statistics(COLUMNS, t.num_rows, _windows(t, cuts))
    assert got["row_count"] == len(rows) and got["sample_rows"] == len(rows)
    frame = pl.from_arrow(t)
    assert isinstance(frame, pl.DataFrame)
    for col, stats in zip(COLUMNS, got["columns"], strict=True):
        want = _expected(frame.get_column(col.name), col.type)
        assert stats["distinct_approx"] is False
        for key, value in want.items():
            if key in {"mean", "stddev"} and not all(map(math.isfinite, [value, stats[key]])):
                continue  # infinities: inf - inf is NaN, whatever the algorithm
            assert _close(stats[key], value), (col.name, key, stats[key], value)
        v = frame.get_column(col.name).drop_nulls()
        if col.type == "float":
            v = v.filter(v.is_not_nan())
        if "top_values" in stats:
            counts = dict(v.value_counts().iter_rows())
            for top in stats["top_values"]:
                assert counts[top["value"]] == top["count"]
            assert stats["top_values"][0]["count"] == max(counts.values())
        if "histogram" in stats and all(map(math.isfinite, v.cast(pl.Float64).to_list() or [0])):
            assert sum(b["count"] for b in stats["histogram"]) == len(v)
        if "quantiles" in stats:
            ordered = v.sort()
            assert ordered.min() <= stats["quantiles"]["p25"] <= stats["quantiles"]["p50"]
            assert stats["quantiles"]["p50"] <= stats["quantiles"]["p75"] <= ordered.max()


def large_table(n: int = 300_000) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """``n`` rows: integers of ~150,000 values, four cities of skewed shares."""
    rng = np.random.default_rng(7)
    values = rng.integers(0, 150_000, n)
    cities = rng.choice(["Oslo", "Lima", "Kyoto", "Rome"], n, p=[0.4, 0.3, 0.2, 0.1])
    return pa.table({"i": values, "s": pa.array(cities, pa.large_string())}), values, cities


def test_large_tables_estimate_distinct_and_sample() -> None:
    """Beyond the sketch's size, distinct counts are estimates within 5 %;
    beyond the sample's, quantiles come from every n-th row and histogram
    counts still add up to the column's values."""
    n = 300_000
    t, values, cities = large_table(n)
    cols = [Column("i", "integer"), Column("s", "string")]
    got = statistics(cols, n, (t.slice(a, 65_536) for a in range(0, n, 65_536)))
    i, s = got["columns"]
    truth = len(np.unique(values))
    assert i["distinct_approx"] is True
    assert abs(i["distinct_count"] - truth) / truth < 0.05
    assert got["sample_rows"] == len(range(0, n, math.ceil(n / compute.SAMPLE_ROWS)))
    assert sum(b["count"] for b in i["histogram"]) == n
    assert abs(i["quantiles"]["p50"] - np.median(values)) < 0.02 * 150_000
    assert i["mean"] == pytest.approx(values.mean())
    assert s["distinct_count"] == 4 and s["distinct_approx"] is False
    assert s["top_values_approx"] is False
    assert [x["value"] for x in s["top_values"]] == ["Oslo", "Lima", "Kyoto", "Rome"]
    assert s["top_values"][0]["count"] == int((cities == "Oslo").sum())


def test_narrow_integer_ranges_bin_by_value() -> None:
    t = pa.table({"q": pa.array([1, 2, 2, 3, 3, 3, None], pa.int64())})
    (q,) = statistics([Column("q", "integer")], 7, [t])["columns"]
    assert q["histogram"] == [
        {"lo": 1, "hi": 1, "count": 1},
        {"lo": 2, "hi": 2, "count": 2},
        {"lo": 3, "hi": 3, "count": 3},
    ]
    assert q["quantiles"] == {"p25": 2, "p50": 3, "p75": 3}

"""Statistics merged from chunk states (``features.stats.state``) are the
statistics of the rows: the same figures as one pass over them, whatever
the cut into chunks, through the stored form and back."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.chunks import parquet_writer, text_extremes
from core.schema import Column, arrow_type
from features.stats import state
from features.stats.compute import K, statistics
from tests.features.stats.test_compute import (
    COLUMNS,
    _close,
    _table,
    _windows,
    large_table,
    row,
)

ALL = 2**64


def _cid(i: int) -> str:
    return f"{i + 1:016x}" + "0" * 48


def _known(part: pa.Table, columns: list[Column]) -> dict[str, tuple[Any, Any]]:
    """The text extremes an import's chunk writer hands the state: from the
    statistics of the file written (row groups of three rows, some of them
    nulls only)."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        parquet_writer(Path(tmp) / "c.parquet", part.schema) as w,
    ):
        w.write_table(part, row_group_size=3)
    return text_extremes(w.writer.metadata, columns)


def _merged(
    parts: list[pa.Table], columns: list[Column], bound: int = ALL, *, footers: bool = False
) -> dict[str, Any]:
    states = [
        state.chunk_state(_cid(i), p, columns, _known(p, columns) if footers else None)
        for i, p in enumerate(parts)
    ]
    loaded = [state.load(state.dump(s), columns) for s in states]
    assert all(s is not None for s in loaded)
    return state.result(state.merge([s for s in loaded if s], columns, bound))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(row, max_size=60), st.lists(st.integers(0, 60), max_size=4), st.booleans())
def test_merged_states_are_the_statistics_of_the_rows(
    rows: list[tuple[Any, ...]], cuts: list[int], footers: bool
) -> None:
    """Chunks of at most ``SMALL`` rows keep every row in their samples, so
    the merge is exact: every figure is the one-pass figure, whether a
    chunk's text extremes came from its file's statistics (an import) or
    were computed (a state made when needed)."""
    t = _table(rows)
    want = statistics(COLUMNS, t.num_rows, [t])
    got = _merged(_windows(t, cuts), COLUMNS, footers=footers)
    assert got["row_count"] == want["row_count"] and got["sample_rows"] == len(rows)
    for a, b in zip(got["columns"], want["columns"], strict=True):
        assert set(a) == set(b), a["name"]
        for key in a:
            if key in {"mean", "stddev"} and not all(
                isinstance(x, float) and math.isfinite(x) for x in (a[key], b[key])
            ):
                continue  # infinities: inf - inf is NaN, whatever the order of merging
            if key == "histogram":
                assert [(x["lo"], x["hi"]) for x in a[key]] == [(x["lo"], x["hi"]) for x in b[key]]
                assert [x["count"] for x in a[key]] == [x["count"] for x in b[key]]
            else:
                assert _close(a[key], b[key]) or a[key] == b[key], (a["name"], key, a[key], b[key])


def test_large_chunks_sample_one_row_in_share_and_estimate_distinct() -> None:
    n = 300_000
    t, values, cities = large_table(n)
    cols = [Column("i", "integer"), Column("s", "string")]
    parts = [t.slice(a, 131_072) for a in range(0, n, 131_072)]
    bound = min(ALL * 100_000 // n, *(state.bound_of(p.num_rows) for p in parts))
    got = _merged(parts, cols, bound)
    i, s = got["columns"]
    truth = len(np.unique(values))
    assert i["distinct_approx"] is True and abs(i["distinct_count"] - truth) / truth < 0.05
    # the chunks of 131,072 and 37,856 rows keep one row in 32: ~9,400
    assert abs(got["sample_rows"] - n / state.SHARE) < 0.05 * n / state.SHARE
    assert sum(b["count"] for b in i["histogram"]) == n
    assert abs(i["quantiles"]["p50"] - np.median(values)) < 0.02 * 150_000
    assert i["mean"] == pytest.approx(values.mean())
    assert i["min"] == values.min() and i["max"] == values.max()
    assert s["distinct_count"] == 4 and s["distinct_approx"] is False
    assert [x["value"] for x in s["top_values"]] == ["Oslo", "Lima", "Kyoto", "Rome"]
    assert s["top_values"][0]["count"] == int((cities == "Oslo").sum())


def test_exact_counts_give_way_to_the_sketch_when_chunks_together_hold_many_values() -> None:
    """Each chunk counts its 800 values exactly; together they hold 1,600,
    beyond ``EXACT_VALUES``: the counts become hashes in the sketch, still
    exact (fewer than ``K``)."""
    a = pa.table({"s": pa.array([f"a{i % 800}" for i in range(4000)], pa.large_string())})
    b = pa.table({"s": pa.array([f"b{i % 800}" for i in range(4000)], pa.large_string())})
    (s,) = _merged([a, b, a], [Column("s", "string")])["columns"]
    assert s["distinct_count"] == 1600 < K and s["distinct_approx"] is False
    assert s["top_values_approx"] is False  # every row sampled: counted in the sample
    assert s["top_values"][0]["count"] == 10  # "a…" in two chunks, five times each


def test_exact_and_nested_types_survive_the_stored_form() -> None:
    cols = [
        Column("d", "decimal(12,2)"),
        Column("t", "time"),
        Column("u", "duration"),
        Column("z", "datetime_tz"),
        Column("l", "list<integer>"),
        Column("r", 'struct<"a":string>'),
    ]
    n = 50
    t = pa.table(
        {
            "d": pa.array(
                [decimal.Decimal(f"{i}.{i % 100:02d}") if i % 7 else None for i in range(n)],
                arrow_type("decimal(12,2)"),
            ),
            "t": pa.array([dt.time(i % 24, i % 60) for i in range(n)], arrow_type("time")),
            "u": pa.array([dt.timedelta(seconds=i * 90) for i in range(n)], arrow_type("duration")),
            "z": pa.array(
                [dt.datetime(2024, 1, 1 + i % 28, tzinfo=dt.UTC) for i in range(n)],
                arrow_type("datetime_tz"),
            ),
            "l": pa.array(
                [[i, i + 1] if i % 3 else None for i in range(n)], arrow_type("list<integer>")
            ),
            "r": pa.array([{"a": str(i % 4)} for i in range(n)], arrow_type('struct<"a":string>')),
        }
    )
    want = statistics(cols, n, [t])
    got = _merged([t.slice(0, 20), t.slice(20)], cols)
    for a, b in zip(got["columns"], want["columns"], strict=True):
        moments = ("mean", "stddev")
        assert {k: v for k, v in a.items() if k not in moments} == {
            k: v for k, v in b.items() if k not in moments
        }
        assert [a.get(k) for k in moments] == pytest.approx([b.get(k) for k in moments])


def test_a_state_of_another_version_or_other_columns_is_not_merged() -> None:
    t = pa.table({"i": pa.array([1, 2, 3], pa.int64())})
    blob = state.dump(state.chunk_state(_cid(0), t, [Column("i", "integer")]))
    assert state.load(blob, [Column("i", "integer")]) is not None
    assert state.load(blob, [Column("j", "integer")]) is None
    assert state.load(blob, [Column("i", "float")]) is None
    assert state.load(b"not a state", [Column("i", "integer")]) is None
    assert state.load(blob, [Column("i", "integer")], cid=_cid(1)) is None  # another chunk's
    stale = blob.replace(f'"version":{state.VERSION}'.encode(), b'"version":0', 1)
    assert state.load(stale, [Column("i", "integer")]) is None


def test_a_column_named_like_the_sample_keys_is_a_column_like_any_other() -> None:
    """The sample's keys live apart from the columns (a review found a
    column named ``_key`` replaced by them: its quantiles were keys)."""
    cols = [Column("_key", "integer"), Column("k", "string")]
    t = pa.table(
        {
            "_key": pa.array(range(30), pa.int64()),
            "k": pa.array([f"v{i}" for i in range(30)], pa.large_string()),
        }
    )
    got = _merged([t.slice(0, 10), t.slice(10)], cols)
    want = statistics(cols, 30, [t])
    assert (
        got["columns"][0]["quantiles"]
        == want["columns"][0]["quantiles"]
        == {
            "p25": 7,
            "p50": 15,
            "p75": 22,
        }
    )
    assert got["columns"][1]["distinct_count"] == 30


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # cut short
        lambda b: b.replace(b'"rows":', b'"rows":-', 1),
        lambda b: b.replace(b'"bound":"', b'"bound":"-', 1),
        lambda b: b.replace(b'"kmv":', b'"kmv":1', 1),
        lambda b: b.replace(b'"nulls":', b'"nulls":-', 1),
        lambda b: b.replace(b'"mean":"', b'"mean":"x', 1),
    ],
)
def test_a_damaged_state_is_not_merged(damage: Any) -> None:
    cols = [Column("i", "integer"), Column("s", "string")]
    t = pa.table({"i": pa.array([1, 2, 3], pa.int64()), "s": pa.array(["a", "b", None])})
    blob = state.dump(state.chunk_state(_cid(0), t, cols), _cid(0))
    assert state.load(blob, cols, _cid(0)) is not None
    assert state.load(damage(blob), cols, _cid(0)) is None


def test_extremes_of_another_type_are_damage() -> None:
    """A state whose min and max are not of the column's type (a bucket
    written by hand) is made again, never compared (a 500 before)."""
    ints = [Column("i", "integer")]
    blob = state.dump(state.chunk_state(_cid(0), pa.table({"i": [1, 2]}), ints), _cid(0))
    texts = state.dump(
        state.chunk_state(_cid(0), pa.table({"i": pa.array(["a", "b"])}), [Column("i", "string")]),
        _cid(0),
    )
    # the string state's extremes frame in the integer state's place
    frames = [_frames(blob), _frames(texts)]
    mixed = _unframes([frames[0][0], frames[1][1], *frames[0][2:]])
    assert state.load(mixed, ints, _cid(0)) is None


def _frames(blob: bytes) -> list[bytes]:
    out, at = [], 4
    while at < len(blob):
        n = int.from_bytes(blob[at : at + 4], "little")
        out.append(blob[at + 4 : at + 4 + n])
        at += 4 + n
    return out


def _unframes(frames: list[bytes]) -> bytes:
    return b"DSAS" + b"".join(len(f).to_bytes(4, "little") + f for f in frames)


def test_many_states_fold_with_a_bounded_sketch() -> None:
    """A hundred chunk states fold one by one (the sketch compacted as they
    come): the distinct count is the rows' own."""
    cols = [Column("i", "integer")]
    parts = [
        pa.table({"i": pa.array(range(i * 100, i * 100 + 100), pa.int64())}) for i in range(100)
    ]
    states = [state.chunk_state(_cid(i), p, cols) for i, p in enumerate(parts)]
    m = state.Merger(cols, ALL)
    for s in states:
        m.add(s)
        assert all(len(k) <= state.Merger.COMPACT_EVERY for k in m.kmvs)
    (i,) = state.result(m.state())["columns"]
    assert i["distinct_approx"] is True and abs(i["distinct_count"] - 10_000) < 500
    assert i["min"] == 0 and i["max"] == 9_999 and i["mean"] == pytest.approx(4_999.5)


def test_text_extremes_leave_out_a_column_whose_statistics_the_writer_dropped() -> None:
    """The Parquet writer keeps no statistics of a row group whose least or
    greatest value is past its size limit (4 KiB): that column's extremes
    are computed from the rows, the others' taken from the file."""
    long = "z" * 5000
    t = pa.table({"a": ["b", "a", None, "c"], "b": ["x", long, None, "y"], "c": [None] * 4})
    cols = [Column("a", "string"), Column("b", "string"), Column("c", "string")]
    t = t.cast(pa.schema([(c.name, arrow_type(c.type)) for c in cols]))
    known = _known(t, cols)
    assert known == {"a": ("a", "c"), "c": (None, None)}
    got = state.chunk_state(_cid(0), t, cols, known).columns
    assert [(a.min, a.max) for a in got] == [("a", "c"), ("x", long), (None, None)]

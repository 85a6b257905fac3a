"""CSV text by lookup (dates and datetimes within 1900–2100 whose range the
Parquet statistics give) is byte for byte what polars' CSV writer formats;
outside that range, or without ranges, the writer formats them itself."""

from __future__ import annotations

import datetime as dt
import io
import random
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from features.exports.formats import CsvEncoder

UTC = dt.UTC
DAY_US = 86_400_000_000


def _csv(enc: CsvEncoder, table: pa.Table, ranges: dict[str, tuple[Any, Any]] | None) -> bytes:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    out = io.BytesIO()
    enc.write(frame.lazy(), out, ranges)
    return out.getvalue()


def _plan(enc: CsvEncoder, table: pa.Table, ranges: dict[str, tuple[Any, Any]]) -> str:
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return enc.frame(frame.lazy(), ranges).explain()


def _ranges(table: pa.Table) -> dict[str, tuple[Any, Any]]:
    """What Parquet statistics would say: least and greatest raw value."""
    out: dict[str, tuple[Any, Any]] = {}
    for name in table.column_names:
        col = table.column(name)
        t = col.type
        if pa.types.is_date32(t):
            raw = col.cast(pa.int32())
        elif pa.types.is_timestamp(t):
            raw = col.cast(pa.int64())
        else:
            raw = col.cast(pa.large_binary())
        values = [v for v in raw.to_pylist() if v is not None]
        out[name] = (min(values), max(values))
    return out


def _sample(lo: dt.datetime, hi: dt.datetime, n: int, rnd: random.Random) -> list[int | None]:
    a = int((lo - dt.datetime(1970, 1, 1)).total_seconds()) * 1_000_000
    b = int((hi - dt.datetime(1970, 1, 1)).total_seconds()) * 1_000_000 + 999_999
    picks: list[int | None] = [a, b, 0, -1, DAY_US - 1, DAY_US, -DAY_US, -DAY_US - 1]
    picks += [rnd.randint(a, b) for _ in range(n)]
    picks += [rnd.randint(-5 * DAY_US, 5 * DAY_US) for _ in range(n // 10)]  # around 1970
    picks += [None] * (n // 20)
    rnd.shuffle(picks)
    return picks


@pytest.mark.parametrize("raw", [False, True])
def test_dates_and_datetimes_by_lookup_equal_the_writer(raw: bool) -> None:
    rnd = random.Random(7)
    us = _sample(dt.datetime(1900, 1, 1), dt.datetime(2100, 12, 31, 23, 59, 59), 20_000, rnd)
    days = [None if v is None else v // DAY_US for v in us]
    table = pa.table(
        {
            "day": pa.array(days, pa.int32()).cast(pa.date32()),
            "at": pa.array(us, pa.int64()).cast(pa.timestamp("us")),
            "at_tz": pa.array(us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "name": pa.array([f"x{v}" if v else None for v in days], pa.large_string()),
        }
    )
    enc = CsvEncoder(table.schema, raw=raw)
    # day: 1; at and at_tz: the date, the clock and two groups of 3 digits
    assert _plan(enc, table, _ranges(table)).count("gather") == 9
    looked_up = _csv(enc, table, _ranges(table))
    assert looked_up == _csv(enc, table, None)
    line = looked_up.split(b"\n")[0]
    assert line.count(b",") == 3


def test_values_outside_the_table_are_formatted_by_the_writer() -> None:
    rnd = random.Random(8)
    us = _sample(dt.datetime(1601, 1, 1), dt.datetime(2399, 12, 31), 2_000, rnd)
    table = pa.table(
        {
            "day": pa.array([None if v is None else v // DAY_US for v in us], pa.int32()).cast(
                pa.date32()
            ),
            "at_tz": pa.array(us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
    )
    enc = CsvEncoder(table.schema)
    assert "gather" not in _plan(enc, table, _ranges(table))
    assert _csv(enc, table, _ranges(table)) == _csv(enc, table, None)
    assert b"1601-01-01 00:00:00.000000Z" in _csv(enc, table, _ranges(table))


def test_text_whose_least_value_is_above_at_skips_the_formula_check() -> None:
    table = pa.table({"s": pa.array(["Berlin", "user_1", "é", None], pa.large_string())})
    enc = CsvEncoder(table.schema)
    assert _csv(enc, table, {"s": (b"Berlin", "é".encode())}) == _csv(enc, table, None)
    risky = pa.table({"s": pa.array(["=1+1", "@x", "-2", "+3", "\tt", "ok"], pa.large_string())})
    enc = CsvEncoder(risky.schema)
    got = _csv(enc, risky, _ranges(risky))  # least value "\tt": checked
    assert got == _csv(enc, risky, None)
    assert got.split(b"\n")[:4] == [b"'=1+1", b"'@x", b"'-2", b"'+3"]

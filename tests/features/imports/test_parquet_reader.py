from __future__ import annotations

import datetime as dt
import decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from features.imports.errors import ImportFailed
from features.imports.parquet_reader import ParquetSource

UTC = dt.UTC


def _source(tmp_path: Path, table: pa.Table, **options: Any) -> tuple[ParquetSource, pa.Table]:
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=3)
    src = ParquetSource(path, options=options, fmt="parquet", on_bytes=lambda n: None)
    batches = [pa.RecordBatch.from_arrays(typed, names=src.names) for _, typed in src]
    return src, pa.Table.from_batches(batches)


def test_every_flat_type_maps_to_a_logical_type(tmp_path: Path) -> None:
    table = pa.table(
        {
            "i8": pa.array([1, None, -3, 4], pa.int8()),
            "u32": pa.array([1, 2, 3, 4], pa.uint32()),
            "u64": pa.array([1, 2, 3, 2**63 + 5], pa.uint64()),
            "f32": pa.array([1.5, None, float("nan"), -0.0], pa.float32()),
            "b": pa.array([True, False, None, True]),
            "s": pa.array(["a", "", None, "é"], pa.large_string()),
            "bin": pa.array([b"\x00", b"", None, b"xy"], pa.binary()),
            "d": pa.array([dt.date(2024, 1, 1)] * 4, pa.date32()),
            "ts": pa.array([dt.datetime(2024, 1, 1, 1, 2, 3, 456789)] * 4, pa.timestamp("ns")),
            "tz": pa.array(
                [dt.datetime(2024, 1, 1, 12, tzinfo=UTC)] * 4, pa.timestamp("ms", tz="Europe/Paris")
            ),
            "dec": pa.array(
                [decimal.Decimal("1.10"), None, decimal.Decimal("-3.00"), 0], pa.decimal128(10, 2)
            ),
            "cat": pa.array(["x", "y", "x", None]).dictionary_encode(),
            "t": pa.array([dt.time(1, 2, 3)] * 4, pa.time64("ns")),
            "dur": pa.array([dt.timedelta(seconds=1)] * 4, pa.duration("ms")),
            "wide": pa.array([decimal.Decimal("1.5")] * 4, pa.decimal256(40, 1)),
            "nul": pa.nulls(4),
        }
    )
    src, got = _source(tmp_path, table)
    assert src.types() == [
        "integer", "integer", "string", "float", "boolean", "string", "binary",
        "date", "datetime", "datetime_tz", "decimal(10,2)", "string", "time",
        "duration", "string", "string",
    ]  # fmt: skip
    assert got.column("u64").to_pylist() == ["1", "2", "3", str(2**63 + 5)]
    assert got.column("dec").type == pa.decimal128(10, 2)
    assert got.column("dec").to_pylist() == [
        decimal.Decimal("1.10"), None, decimal.Decimal("-3.00"), decimal.Decimal("0.00")
    ]  # fmt: skip
    assert got.column("t").to_pylist()[0] == dt.time(1, 2, 3)
    assert got.column("dur").to_pylist()[0] == dt.timedelta(seconds=1)
    assert got.column("wide").to_pylist()[0] == "1.5"  # beyond 38 digits: exact text
    assert got.column("cat").to_pylist() == ["x", "y", "x", None]
    assert got.column("tz").to_pylist()[0] == dt.datetime(2024, 1, 1, 12, tzinfo=UTC)
    assert got.column("ts").to_pylist()[0] == dt.datetime(2024, 1, 1, 1, 2, 3, 456789)
    assert src.nullable()[0] is True and src.nullable()[1] is False
    assert src.rows == 4


def test_nested_columns_keep_their_types_and_maps_become_json(tmp_path: Path) -> None:
    table = pa.table(
        {
            "l": pa.array([[1, 2], [], None]),
            "st": pa.array([{"a": 1, "b": "x"}, {"a": None, "b": "y"}, None]),
            "m": pa.array([[("k", 1)], [], None], pa.map_(pa.string(), pa.int64())),
            "lm": pa.array([[[("k", 1)]], [], None], pa.list_(pa.map_(pa.string(), pa.int64()))),
            "fl": pa.array([[1, 2], [3, 4], None], pa.list_(pa.int16(), 2)),
        }
    )
    src, got = _source(tmp_path, table)
    assert src.types() == [
        "list<integer>", 'struct<"a":integer,"b":string>', "string", "string", "list<integer>"
    ]  # fmt: skip
    assert got.column("l").to_pylist() == [[1, 2], [], None]
    assert got.column("l").type == pa.large_list(pa.int64())
    assert got.column("st").to_pylist() == [{"a": 1, "b": "x"}, {"a": None, "b": "y"}, None]
    assert got.column("m").to_pylist() == ['[["k",1]]', "[]", None]
    assert got.column("lm").to_pylist() == ['[[["k",1]]]', "[]", None]  # a map inside: JSON
    assert got.column("fl").to_pylist() == [[1, 2], [3, 4], None]


def test_damaged_files_fail_clearly(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"a": list(range(1000))}), path)
    data = path.read_bytes()
    for broken in (data[: len(data) // 2], b"PAR1" + b"\x00" * 100, b"not parquet at all"):
        path.write_bytes(broken)
        with pytest.raises(ImportFailed) as exc:
            ParquetSource(path, options={}, fmt="parquet", on_bytes=lambda n: None)
        assert exc.value.code == "corrupt_parquet"


def test_forced_types(tmp_path: Path) -> None:
    src, got = _source(
        tmp_path, pa.table({"a": [1, 2], "b": ["1", "x"]}), column_types={"a": "string"}
    )
    assert src.types() == ["string", "string"] and got.column("a").to_pylist() == ["1", "2"]
    with pytest.raises(ImportFailed) as exc:
        _source(tmp_path, pa.table({"b": ["1", "x"]}), column_types={"b": "integer"})
    assert exc.value.code == "bad_value" and exc.value.extra["column"] == "b"

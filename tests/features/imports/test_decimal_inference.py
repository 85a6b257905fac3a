"""The CSV rule that makes a column decimal: plain fixed-point text with more
than 17 significant digits (api.md, "Types"); floats written in full stay
floats."""

from __future__ import annotations

import pyarrow as pa
import pytest

from features.imports.csv_types import TypeInference, fixed_point_shape


def _infer(*columns: list[str | None]) -> list[str]:
    names = [f"c{i}" for i in range(len(columns))]
    inf = TypeInference(names)
    arrays = [pa.array(c, pa.large_string()) for c in columns]
    inf.update(pa.RecordBatch.from_arrays(arrays, names=names))
    return inf.result()


@pytest.mark.parametrize(
    ("values", "kind"),
    [
        (["12345678901234567.89", "0.5"], "decimal(19,2)"),
        (["0.30000000000000004", "-123.4563741223671"], "float"),  # floats in full
        (["0.000012345678901234567", "1.5"], "float"),  # 17 significant digits
        (["0.0000123456789012345678", "1.5"], "decimal(23,22)"),  # 18
        (["-0.123456789012345678", None], "decimal(19,18)"),
        ([".00001234567890123456", "1"], "float"),  # 16 significant digits
        ([".0000123456789012345678", "1"], "decimal(23,22)"),
        (["1e3", "12345678901234567.89"], "float"),  # an exponent: not fixed-point
        (["19.99", "5.00"], "float"),
        (["1" * 30 + ".5" + "1" * 10], "float"),  # 41 digits: beyond decimal128
    ],
)
def test_which_columns_become_decimal(values: list[str | None], kind: str) -> None:
    assert _infer(values) == [kind]


def test_shape_of_a_sliced_batch_with_signs_and_nulls() -> None:
    arr = pa.array(["x", "+1.25", None, "-300", ".5"], pa.large_string()).slice(1)
    assert fixed_point_shape(arr) == (3, 2, False)

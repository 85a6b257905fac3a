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


def test_integers_seen_before_the_decimal_count_in_its_precision() -> None:
    names = ["amount"]
    inf = TypeInference(names)
    first = pa.array(["100000000000000", "7"], pa.large_string())
    later = pa.array(["0.123456789012345678901"], pa.large_string())
    for arr in (first, later):
        inf.update(pa.RecordBatch.from_arrays([arr], names=names))
    kind = inf.result()[0]
    assert kind == "decimal(36,21)"
    from features.imports.csv_types import convert

    assert convert(first, kind) is not None and convert(later, kind) is not None


@pytest.mark.parametrize(
    ("text", "kind", "want"),
    [
        ("[1.7]", "list<integer>", None),  # not truncated to 1
        ("[true]", "list<integer>", None),
        ("[1.23456789012345678901]", "list<decimal(30,20)>", "1.23456789012345678901"),
        ('{"q": 12345678901234567.89}', 'struct<"q":decimal(20,2)>', "12345678901234567.89"),
        ("P9999999999D", "duration", None),  # beyond 64-bit microseconds: refused
        ('["P9999999999D"]', "list<duration>", None),
    ],
)
def test_exact_text_is_read_exactly_or_refused(text: str, kind: str, want: str | None) -> None:
    from features.imports.csv_types import convert

    got = convert(pa.array([text], pa.large_string()), kind)
    if want is None:
        assert got is None
    else:
        assert got is not None and want in str(got.to_pylist())

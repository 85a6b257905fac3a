"""The exact and nested types' row encodings (docs/hash-spec.md, tags h u n l r):
golden vectors, byte-by-byte checks, and the promise that they change nothing
for rows without such a column."""

from __future__ import annotations

import datetime as dt
import decimal
import struct

import blake3
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import UnknownType
from core.hashing import row_hashes
from core.objects import Schema
from core.schema import Column, parse_type, spec_from_json
from core.typed_values import duration_iso, parse_duration
from tests.core.test_hashing import _hashes

D = decimal.Decimal

GOLDEN = {
    "decimal(12,2)": (
        [D("0.00"), D("-1.50"), D("1234567890.12"), None],
        "7565b66b31cdfb5630d0455da6c4b13a fe752175eaeccad2cff0e71087342303 "
        "17dd0fd06491033ceed78b86f5adb449 1a3348fca05f6a53c890b22ff67ee2c4",
    ),
    "time": (
        [dt.time(0, 0), dt.time(23, 59, 59, 999999), None],
        "3a0b2299e1589ba01006b9a50653437a a33e76292539f2d14ddaf0decc43c127 "
        "75aacd2bb3a655fe2ba3d902e5211ecc",
    ),
    "duration": (
        [dt.timedelta(0), dt.timedelta(days=-1, microseconds=1), None],
        "0cfb80338e76dd879505ab03fed2090b 629543419164b162a48894ead4ee2ae8 "
        "b075bfabedc9ec11776594f87ba69406",
    ),
    "list<integer>": (
        [[], [1, None, 3], None],
        "e07ae73e774f429860c817777895afa2 39680ce54cc9c3187ed5095129c06466 "
        "9053433b3b652fd34186bac0b3397154",
    ),
    'struct<"a":integer,"b":list<string>>': (
        [{"a": 1, "b": ["x", None]}, {"a": None, "b": None}, None],
        "2ef6d50d2069737dc8ad8dba594fa463 55d2db9aaa3fb59f7d94bc4099249228 "
        "87f5105f1735eb7c93160d5561e199de",
    ),
}


@pytest.mark.parametrize("logical", sorted(GOLDEN))
def test_golden_row_hashes(logical: str) -> None:
    values, expected = GOLDEN[logical]
    assert _hashes(values, logical) == expected.split()


def _row(name: bytes, tag: bytes, value: bytes | None) -> bytes:
    enc = b"dsa.row.v1\0" + struct.pack("<I", 1) + struct.pack("<I", len(name)) + name + tag
    return enc + (b"\x00" if value is None else b"\x01" + value)


def _digest(enc: bytes) -> str:
    return blake3.blake3(enc).digest(length=16).hex()


def test_decimal_by_hand() -> None:
    unscaled = (-150).to_bytes(16, "little", signed=True)
    value = struct.pack("<Q", 18) + bytes((12, 2)) + unscaled
    assert _hashes([D("-1.50")], "decimal(12,2)") == [_digest(_row(b"v", b"n", value))]
    # the same number at another scale or precision is another value
    assert _hashes([D("-1.5")], "decimal(12,1)") != _hashes([D("-1.50")], "decimal(12,2)")
    assert _hashes([D("-1.50")], "decimal(11,2)") != _hashes([D("-1.50")], "decimal(12,2)")


def test_time_and_duration_by_hand() -> None:
    us = ((1 * 60 + 2) * 60 + 3) * 1_000_000 + 4
    assert _hashes([dt.time(1, 2, 3, 4)], "time") == [
        _digest(_row(b"v", b"h", struct.pack("<q", us)))
    ]
    assert _hashes([dt.timedelta(microseconds=-5)], "duration") == [
        _digest(_row(b"v", b"u", struct.pack("<q", -5)))
    ]


def test_list_and_struct_by_hand() -> None:
    items = b"i" + struct.pack("<Q", 3)
    items += b"\x01" + struct.pack("<q", 1) + b"\x00" + b"\x01" + struct.pack("<q", 3)
    value = struct.pack("<Q", len(items)) + items
    assert _hashes([[1, None, 3]], "list<integer>") == [_digest(_row(b"v", b"l", value))]

    inner = b"s" + struct.pack("<Q", 1) + b"\x01" + struct.pack("<Q", 1) + b"x"
    fields = struct.pack("<I", 2)
    fields += struct.pack("<I", 1) + b"a" + b"i" + b"\x01" + struct.pack("<q", 7)
    fields += struct.pack("<I", 1) + b"b" + b"l" + b"\x01" + struct.pack("<Q", len(inner)) + inner
    value = struct.pack("<Q", len(fields)) + fields
    got = _hashes([{"a": 7, "b": ["x"]}], 'struct<"a":integer,"b":list<string>>')
    assert got == [_digest(_row(b"v", b"r", value))]


def test_sliced_and_null_decimals_hash_like_fresh_ones() -> None:
    arr = pa.array([D("1.00"), None, D("2.50"), D("-3.25")], pa.decimal128(5, 2))
    sliced = pa.table({"v": arr.slice(1)})
    fresh = pa.table({"v": pa.array([None, D("2.50"), D("-3.25")], pa.decimal128(5, 2))})
    cols = [Column("v", "decimal(5,2)")]
    assert row_hashes(sliced, cols) == row_hashes(fresh, cols)


def test_old_schemas_keep_their_form_and_new_ones_spell_parameters_out() -> None:
    assert Column("a", "integer").to_json() == {"name": "a", "type": "integer", "nullable": True}
    c = Column("price", "decimal(12,2)", False)
    assert c.to_json() == {
        "name": "price",
        "type": "decimal",
        "precision": 12,
        "scale": 2,
        "nullable": False,
    }
    assert Column.from_json(c.to_json()) == c
    nested = Column("n", 'struct<"a b":list<decimal(5,1)>,"c":time>')
    assert Column.from_json(nested.to_json()) == nested
    assert nested.to_json()["fields"][0] == {
        "name": "a b",
        "type": "list",
        "item": {"type": "decimal", "precision": 5, "scale": 1},
    }
    assert Schema((c, nested)).id == Schema.from_json(Schema((c, nested)).to_json()).id


@pytest.mark.parametrize(
    "bad",
    [
        "decimal(0,0)",
        "decimal(39,2)",
        "decimal(5,6)",
        "list<>",
        "struct<>",
        "list<integer",
        'struct<"a":integer,"a":string>',
        "decimal(1,1)x",
        "money",
    ],
)
def test_bad_type_strings_are_refused(bad: str) -> None:
    with pytest.raises(UnknownType):
        parse_type(bad)


def test_type_objects_parse_like_strings() -> None:
    assert spec_from_json({"type": "decimal", "precision": 9, "scale": 3}).text() == "decimal(9,3)"
    assert spec_from_json({"type": "list", "item": "time"}).text() == "list<time>"
    with pytest.raises(UnknownType):
        spec_from_json({"type": "decimal", "precision": True})


@pytest.mark.parametrize(
    ("us", "text"),
    [
        (0, "PT0S"),
        (1, "PT0.000001S"),
        (-1, "-PT0.000001S"),
        (90_061_500_000, "P1DT1H1M1.5S"),
        (86_400_000_000, "P1D"),
        (7_200_000_000, "PT2H"),
    ],
)
def test_durations_in_iso_8601(us: int, text: str) -> None:
    d = dt.timedelta(microseconds=us)
    assert duration_iso(d) == text
    assert parse_duration(text) == d
    assert parse_duration(str(us)) == d


@pytest.mark.parametrize("bad", ["P", "PT", "P1Y", "1h", "PT1.1234567S", ""])
def test_bad_durations_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_nested_decimals_of_38_digits_keep_every_digit() -> None:
    """Python's default 28-digit context rounded them before encoding: two
    values differing in the last digit hashed the same (a review found it)."""
    a, b = D("1" * 38), D("1" * 37 + "2")
    hashes = _hashes([[a], [b]], "list<decimal(38,0)>")
    assert hashes[0] != hashes[1]


def test_a_nested_value_python_cannot_hold_is_a_clear_error() -> None:
    from core.errors import BadValue

    table = pa.table({"v": pa.array([[3_000_000]], pa.large_list(pa.date32()))})  # year 10183
    with pytest.raises(BadValue) as exc:
        row_hashes(table, [Column("v", "list<date>")])
    assert exc.value.code == "bad_value" and exc.value.extra["column"] == "v"


@pytest.mark.parametrize(
    "hostile",
    ["struct<" + "[" * 1000, 'struct<"\\ud800":integer>', "list<" * 20 + "time" + ">" * 20,
     "x" * 20_000, 'struct<1:integer>'],
)  # fmt: skip
def test_hostile_type_strings_are_refused_cheaply(hostile: str) -> None:
    with pytest.raises(UnknownType):
        parse_type(hostile)


def test_durations_beyond_64_bits_are_refused() -> None:
    with pytest.raises(ValueError):
        parse_duration("P9999999999D")
    with pytest.raises(ValueError):
        parse_duration(str(2**63))


def test_durations_compared_as_text_read_as_iso() -> None:
    from core.typed_values import as_text

    got = as_text(pa.array([dt.timedelta(days=1), None], pa.duration("us")))
    assert got.to_pylist() == ["P1D", None]


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.decimals(
                min_value=D("-9999999999.99"), max_value=D("9999999999.99"), places=2,
                allow_nan=False, allow_infinity=False,
            ),
        ),
        max_size=40,
    ),
    st.integers(min_value=0, max_value=5),
)  # fmt: skip
@settings(max_examples=200, deadline=None)
def test_decimal_bytes_from_buffers_equal_the_spec_value_by_value(
    values: list[decimal.Decimal | None], cut: int
) -> None:
    """The NumPy path over Arrow's 16-byte values gives, for every value
    (sliced arrays and nulls included), the bytes the spec's value-by-value
    encoding gives."""
    from core.typed_values import _encode, value_bytes

    spec = parse_type("decimal(12,2)")
    arr = pa.array(values, pa.decimal128(12, 2)).slice(min(cut, len(values)))
    got = value_bytes(arr, spec).to_pylist()
    want = [None if v is None else _encode(v, spec) for v in arr.to_pylist()]
    assert got == want

"""Tests for the C extension core._rowhash (batch BLAKE3 row hashing).

The C code is checked against the `blake3` package (plain BLAKE3) and against a
pure-Python reference encoder of the canonical row encoding dsa.row.v1, written
straight from docs/hash-spec.md.
"""

from __future__ import annotations

import array
import math
import random
import struct
import threading
import time
from typing import Any

import blake3
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import _rowhash  # type: ignore[attr-defined]  # C extension, no stub

try:  # numpy is optional: not a project dependency
    import numpy as np
except ImportError:  # pragma: no cover
    np = None

# --------------------------------------------------------------------------
# Reference implementation (pure Python, straight from the spec)
# --------------------------------------------------------------------------

CANONICAL_NAN = 0x7FF8000000000000

ARROW_TYPES = {
    "i": pa.int64(),
    "f": pa.float64(),
    "b": pa.bool_(),
    "s": pa.large_string(),
    "x": pa.large_binary(),
    "d": pa.date32(),
    "t": pa.timestamp("us"),
    "z": pa.timestamp("us", tz="Europe/Paris"),  # stored as UTC µs regardless of tz
}


def ref_encode_value(tag: str, v: object) -> bytes:
    if v is None:
        return b"\x00"
    if tag == "i":
        body = struct.pack("<q", v)
    elif tag == "f":
        assert isinstance(v, float)
        if math.isnan(v):
            body = struct.pack("<Q", CANONICAL_NAN)
        elif v == 0.0:
            body = struct.pack("<d", 0.0)  # -0.0 -> +0.0
        else:
            body = struct.pack("<d", v)
    elif tag == "b":
        body = b"\x01" if v else b"\x00"
    elif tag == "s":
        assert isinstance(v, str)
        raw = v.encode("utf-8")
        body = struct.pack("<Q", len(raw)) + raw
    elif tag == "x":
        assert isinstance(v, bytes)
        body = struct.pack("<Q", len(v)) + v
    elif tag == "d":
        body = struct.pack("<i", v)
    elif tag in ("t", "z"):
        body = struct.pack("<q", v)
    else:  # pragma: no cover
        raise AssertionError(tag)
    return b"\x01" + body


def ref_encode_row(cols: list[tuple[str, str, list]], r: int) -> bytes:
    out = b"dsa.row.v1\x00" + struct.pack("<I", len(cols))
    for name, tag, values in cols:
        raw_name = name.encode("utf-8")
        out += struct.pack("<I", len(raw_name)) + raw_name + struct.pack("<B", ord(tag))
        out += ref_encode_value(tag, values[r])
    return out


def ref_hash_rows(nrows: int, cols: list[tuple[str, str, list]], out_len: int = 16) -> bytes:
    return b"".join(
        blake3.blake3(ref_encode_row(cols, r)).digest(length=out_len) for r in range(nrows)
    )


def column_tuple(name: str, tag: str, arr: pa.Array) -> tuple:
    """The hash_rows column tuple for a pyarrow array (possibly a slice)."""
    bufs = arr.buffers()
    if tag in ("s", "x"):
        validity, offsets, data = bufs[0], bufs[1], bufs[2]
    else:
        validity, data, offsets = bufs[0], bufs[1], None
    return (name.encode("utf-8"), ord(tag), validity, data, offsets, arr.offset)


def make_array(tag: str, values: list) -> pa.Array:
    return pa.array(values, type=ARROW_TYPES[tag])


# --------------------------------------------------------------------------
# blake3_digest == blake3 package
# --------------------------------------------------------------------------

BLAKE3_LENGTHS = [0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 2049, 3072, 5000, 100_000, 1_000_000]


def _pattern(n: int) -> bytes:
    # the official BLAKE3 test-vector input pattern: byte i = i % 251
    return bytes(i % 251 for i in range(251)) * (n // 251) + bytes(range(n % 251))


@pytest.mark.parametrize("n", BLAKE3_LENGTHS)
def test_blake3_digest_matches_package(n: int) -> None:
    data = _pattern(n)
    assert len(data) == n
    assert _rowhash.blake3_digest(data) == blake3.blake3(data).digest()
    for out_len in (0, 1, 16, 32, 33, 64, 65, 131):
        assert _rowhash.blake3_digest(data, out_len) == blake3.blake3(data).digest(length=out_len)


def test_blake3_official_vector_empty() -> None:
    assert (
        _rowhash.blake3_digest(b"").hex()
        == "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    )


@given(data=st.binary(max_size=5000), out_len=st.integers(0, 200))
@settings(max_examples=300, deadline=None)
def test_blake3_digest_random(data: bytes, out_len: int) -> None:
    assert _rowhash.blake3_digest(data, out_len=out_len) == blake3.blake3(data).digest(
        length=out_len
    )


@given(n=st.integers(0, 40_000), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=40, deadline=None)
def test_blake3_digest_random_long(n: int, seed: int) -> None:
    data = random.Random(seed).randbytes(n)
    assert _rowhash.blake3_digest(data) == blake3.blake3(data).digest()


def test_blake3_digest_buffer_kinds() -> None:
    data = _pattern(3000)
    want = blake3.blake3(data).digest()
    assert _rowhash.blake3_digest(bytearray(data)) == want
    assert _rowhash.blake3_digest(memoryview(data)) == want
    assert _rowhash.blake3_digest(array.array("B", data)) == want
    assert _rowhash.blake3_digest(pa.py_buffer(data)) == want
    if np is not None:
        assert _rowhash.blake3_digest(np.frombuffer(data, dtype=np.uint8)) == want


def test_blake3_digest_errors() -> None:
    with pytest.raises(TypeError):
        _rowhash.blake3_digest("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        _rowhash.blake3_digest(b"x", -1)


# --------------------------------------------------------------------------
# hash_rows == reference encoder
# --------------------------------------------------------------------------

long_text = st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=4), st.integers(200, 1200))
long_binary = st.builds(
    lambda s, n: s * n, st.binary(min_size=1, max_size=4), st.integers(300, 2500)
)

VALUE_STRATEGIES = {
    "i": st.one_of(
        st.integers(-(2**63), 2**63 - 1),
        st.sampled_from([0, -1, 1, -(2**63), 2**63 - 1]),
    ),
    "f": st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.0, -0.0, math.nan, -math.nan, math.inf, -math.inf, 5e-324]),
        # NaNs with arbitrary sign and payload
        st.integers(1, 2**52 - 1).flatmap(
            lambda m: st.sampled_from(
                [
                    struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000000 | m))[0],
                    struct.unpack("<d", struct.pack("<Q", 0xFFF0000000000000 | m))[0],
                ]
            )
        ),
    ),
    "b": st.booleans(),
    "s": st.one_of(st.text(max_size=12), st.just(""), long_text),
    "x": st.one_of(st.binary(max_size=12), st.just(b""), long_binary),
    "d": st.integers(-(2**31), 2**31 - 1),
    "t": st.integers(-(2**63), 2**63 - 1),
    "z": st.integers(-(2**63), 2**63 - 1),
}


@st.composite
def batches(draw: st.DrawFn) -> tuple[int, list, list]:
    """(nrows, reference columns, hash_rows column tuples)."""
    nrows = draw(st.integers(0, 12))
    ncols = draw(st.integers(0, 7))
    ref_cols = []
    tuples = []
    for _ in range(ncols):
        tag = draw(st.sampled_from(sorted(ARROW_TYPES)))
        name = draw(st.text(max_size=8))
        lead = draw(st.integers(0, 5))  # elements before the slice
        trail = draw(st.integers(0, 3))  # elements after the slice
        null_rate = draw(st.sampled_from([0.0, 0.3, 1.0]))
        values = [
            None if draw(st.floats(0, 1)) < null_rate else draw(VALUE_STRATEGIES[tag])
            for _ in range(lead + nrows + trail)
        ]
        arr = make_array(tag, values)
        if lead or trail or draw(st.booleans()):
            arr = arr.slice(lead, nrows)
            visible = values[lead : lead + nrows]
        else:
            visible = values
        assert len(arr) == nrows
        ref_cols.append((name, tag, visible))
        tuples.append(column_tuple(name, tag, arr))
    return nrows, ref_cols, tuples


@given(batch=batches(), out_len=st.sampled_from([16, 16, 16, 1, 32, 33, 64]))
@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
def test_hash_rows_matches_reference(batch: tuple[int, list, list], out_len: int) -> None:
    nrows, ref_cols, tuples = batch
    got = _rowhash.hash_rows(nrows, tuples, out_len)
    assert len(got) == nrows * out_len
    assert got == ref_hash_rows(nrows, ref_cols, out_len)


def test_hash_rows_default_len_and_keywords() -> None:
    arr = pa.array([1, None, 3], pa.int64())
    cols = [column_tuple("a", "i", arr)]
    got = _rowhash.hash_rows(3, cols)
    assert len(got) == 48
    assert got == _rowhash.hash_rows(nrows=3, columns=cols, out_len=16)
    assert got == ref_hash_rows(3, [("a", "i", [1, None, 3])])


def test_hash_rows_each_type_with_nulls_and_slices() -> None:
    samples: dict[str, list[Any]] = {
        "i": [0, -1, 2**63 - 1, -(2**63), None, 42],
        "f": [0.0, -0.0, math.nan, -math.inf, None, 1.5],
        "b": [True, False, None, True, True, False],
        "s": ["", "héllo wörld ✓", None, "x" * 5000, "日本語" * 400, "a"],
        "x": [b"", b"\x00\xff", None, bytes(range(256)) * 9, b"z", b""],
        "d": [0, -1, 19000, None, -(2**31), 2**31 - 1],
        "t": [0, -1, 1_700_000_000_000_000, None, -(2**63), 2**63 - 1],
        "z": [0, 1, -1_700_000_000_000_000, None, 2**62, -(2**62)],
    }
    for k in range(0, 4):
        ref_cols = []
        tuples = []
        for tag, values in samples.items():
            arr = make_array(tag, values).slice(k)
            ref_cols.append((f"col_{tag}", tag, values[k:]))
            tuples.append(column_tuple(f"col_{tag}", tag, arr))
        n = len(values) - k
        assert _rowhash.hash_rows(n, tuples) == ref_hash_rows(n, ref_cols)


def test_hash_rows_float_normalisation() -> None:
    patterns = [
        0x7FF8000000000000,  # canonical quiet NaN
        0xFFF8000000000000,  # negative quiet NaN
        0x7FF0000000000001,  # signalling NaN
        0x7FFFFFFFFFFFFFFF,  # NaN with all payload bits
        0xFFFFFFFFFFFFFFFF,
    ]
    data = struct.pack(f"<{len(patterns)}Q", *patterns)
    hashes = _rowhash.hash_rows(len(patterns), [(b"f", ord("f"), None, data, None, 0)])
    one = hashes[:16]
    assert hashes == one * len(patterns)
    assert one == ref_hash_rows(1, [("f", "f", [math.nan])])

    zeros = struct.pack("<2Q", 0x0000000000000000, 0x8000000000000000)
    h = _rowhash.hash_rows(2, [(b"f", ord("f"), None, zeros, None, 0)])
    assert h[:16] == h[16:]
    # infinities and the smallest subnormals are not NaN: they stay distinct
    specials = struct.pack(
        "<4Q", 0x7FF0000000000000, 0xFFF0000000000000, 0x0000000000000001, 0x8000000000000001
    )
    h = _rowhash.hash_rows(4, [(b"f", ord("f"), None, specials, None, 0)])
    assert len({h[i : i + 16] for i in range(0, 64, 16)}) == 4


def test_hash_rows_distinguishes_null_empty_name_type_order() -> None:
    def one(cols: list[tuple[str, str, list]]) -> bytes:
        return ref_hash_rows(1, cols)

    s_empty = pa.array([""], pa.large_string())
    s_null = pa.array([None], pa.large_string())
    h_empty = _rowhash.hash_rows(1, [column_tuple("a", "s", s_empty)])
    h_null = _rowhash.hash_rows(1, [column_tuple("a", "s", s_null)])
    assert h_empty != h_null
    assert h_empty == one([("a", "s", [""])])
    assert h_null == one([("a", "s", [None])])
    # same bytes, string vs binary type tag
    x_empty = pa.array([b""], pa.large_binary())
    assert _rowhash.hash_rows(1, [column_tuple("a", "x", x_empty)]) != h_empty
    # renamed column
    assert _rowhash.hash_rows(1, [column_tuple("b", "s", s_empty)]) != h_empty
    # int 0 vs timestamp 0 (same 8 bytes, different tag)
    i0 = pa.array([0], pa.int64())
    t0 = pa.array([0], pa.timestamp("us"))
    assert _rowhash.hash_rows(1, [column_tuple("a", "i", i0)]) != _rowhash.hash_rows(
        1, [column_tuple("a", "t", t0)]
    )
    # column order matters
    ab = [column_tuple("a", "i", i0), column_tuple("b", "s", s_empty)]
    ba = [column_tuple("b", "s", s_empty), column_tuple("a", "i", i0)]
    assert _rowhash.hash_rows(1, ab) != _rowhash.hash_rows(1, ba)


def test_hash_rows_golden_vector() -> None:
    """Pins the v1 encoding: changing it needs a new version tag (dsa.row.v2)."""
    cols: list[tuple[str, str, list[Any]]] = [
        ("id", "i", [1, None]),
        ("name", "s", ["Zoë", ""]),
        ("score", "f", [-0.0, math.nan]),
        ("ok", "b", [True, None]),
        ("day", "d", [19723, -1]),
        ("ts", "t", [1_704_067_200_000_000, None]),
        ("tz", "z", [1_704_067_200_000_000, 0]),
        ("blob", "x", [b"\x00\x01", None]),
    ]
    assert ref_encode_row(cols[:1], 0) == (
        b"dsa.row.v1\x00" + b"\x01\x00\x00\x00" + b"\x02\x00\x00\x00id" + b"i"
        b"\x01" + b"\x01\x00\x00\x00\x00\x00\x00\x00"
    )
    tuples = [column_tuple(n, t, make_array(t, v)) for n, t, v in cols]
    got = _rowhash.hash_rows(2, tuples)
    assert got == ref_hash_rows(2, cols)
    assert got.hex() == GOLDEN_ROWS_HEX


GOLDEN_ROWS_HEX = "86082b39bb77292501f76cc0140dd0df2f83ac7415588f2c699a20a24ae8b840"


def test_hash_spec_doc_example() -> None:
    """The worked example in docs/hash-spec.md."""
    enc = bytes.fromhex(
        "64 73 61 2e 72 6f 77 2e 76 31 00"
        "02 00 00 00"
        "02 00 00 00 69 64"
        "69"
        "01 01 00 00 00 00 00 00 00"
        "04 00 00 00 6e 61 6d 65"
        "73"
        "00"
    )
    cols: list[tuple[str, str, list[Any]]] = [("id", "i", [1]), ("name", "s", [None])]
    assert ref_encode_row(cols, 0) == enc
    tuples = [
        column_tuple("id", "i", make_array("i", [1])),
        column_tuple("name", "s", make_array("s", [None])),
    ]
    got = _rowhash.hash_rows(1, tuples)
    assert got == blake3.blake3(enc).digest(length=16)
    assert got.hex() == "c8c0b8b1f71c204d242e93b89b539a24"


def test_hash_rows_zero_rows_and_zero_columns() -> None:
    assert _rowhash.hash_rows(0, []) == b""
    assert _rowhash.hash_rows(0, [(b"a", ord("i"), None, b"", None, 0)]) == b""
    h = _rowhash.hash_rows(3, [])
    assert (
        h
        == ref_hash_rows(3, [])
        == blake3.blake3(b"dsa.row.v1\x00\x00\x00\x00\x00").digest(length=16) * 3
    )


def test_hash_rows_buffer_kinds() -> None:
    """bytes, bytearray, memoryview, array.array (and numpy) work as well as pa.Buffer."""
    vals = [5, None, -7, 9]
    arr = pa.array(vals, pa.int64())
    sarr = pa.array(["a", None, "ccc", ""], pa.large_string())
    want = ref_hash_rows(4, [("n", "i", vals), ("s", "s", ["a", None, "ccc", ""])])
    v, d = arr.buffers()
    sv, so, sd = sarr.buffers()
    convs = [
        lambda b: b.to_pybytes(),
        lambda b: bytearray(b.to_pybytes()),
        lambda b: memoryview(b.to_pybytes()),
        lambda b: array.array("B", b.to_pybytes()),
    ]
    if np is not None:
        convs.append(lambda b: np.frombuffer(b, dtype=np.uint8))
    for conv in convs:
        # tuple order is (name, tag, validity, data, offsets, offset)
        cols = [
            (b"n", ord("i"), conv(v), conv(d), None, 0),
            (b"s", ord("s"), conv(sv), conv(sd), conv(so), 0),
        ]
        assert _rowhash.hash_rows(4, cols) == want
    # a typed array (int64 items) as data directly
    typed = array.array("q", [5, 0, -7, 9])
    cols = [(b"n", ord("i"), v, typed, None, 0), (b"s", ord("s"), sv, sd, so, 0)]
    assert _rowhash.hash_rows(4, cols) == want
    if np is not None:
        nd = np.array([5, 0, -7, 9], dtype="<i8")
        cols = [(b"n", ord("i"), v, nd, None, 0), (b"s", ord("s"), sv, sd, so, 0)]
        assert _rowhash.hash_rows(4, cols) == want


def test_hash_rows_threads_agree() -> None:
    """The GIL is released while hashing; concurrent calls give the same result."""
    n = 20_000
    arr = pa.array([f"row-{i}" * (i % 7) for i in range(n)], pa.large_string())
    ints = pa.array(range(n), pa.int64())
    cols = [column_tuple("s", "s", arr), column_tuple("i", "i", ints)]
    want = _rowhash.hash_rows(n, cols)
    results: list[bytes] = []

    def work() -> None:
        results.append(_rowhash.hash_rows(n, cols))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [want] * 4


# --------------------------------------------------------------------------
# Errors: never crash, never read out of bounds
# --------------------------------------------------------------------------


def _i(data: object, *, validity: object = None, offset: int = 0) -> tuple:
    return (b"c", ord("i"), validity, data, None, offset)


@pytest.mark.parametrize(
    ("nrows", "cols"),
    [
        # fixed-width data too short
        (3, [_i(b"\x00" * 23)]),
        (2, [_i(b"\x00" * 16, offset=1)]),
        (1, [_i(None)]),
        (2, [(b"c", ord("f"), None, b"\x00" * 15, None, 0)]),
        (2, [(b"c", ord("t"), None, b"\x00" * 15, None, 0)]),
        (2, [(b"c", ord("z"), None, b"\x00" * 15, None, 0)]),
        (3, [(b"c", ord("d"), None, b"\x00" * 11, None, 0)]),
        (9, [(b"c", ord("b"), None, b"\x00", None, 0)]),
        (8, [(b"c", ord("b"), None, b"\x00", None, 1)]),
        # validity too short
        (9, [_i(b"\x00" * 72, validity=b"\xff")]),
        (8, [_i(b"\x00" * 72, validity=b"\xff", offset=1)]),
        # offsets too short / missing
        (2, [(b"c", ord("s"), None, b"abc", struct.pack("<qq", 0, 1), 0)]),
        (1, [(b"c", ord("x"), None, b"abc", None, 0)]),
        # offsets point outside the data, or go backwards, or are negative
        (1, [(b"c", ord("s"), None, b"abc", struct.pack("<qq", 0, 4), 0)]),
        (2, [(b"c", ord("s"), None, b"abc", struct.pack("<qqq", 0, 2, 1), 0)]),
        (1, [(b"c", ord("x"), None, b"abc", struct.pack("<qq", -1, 2), 0)]),
        (1, [(b"c", ord("x"), None, None, struct.pack("<qq", 0, 1), 0)]),
        (1, [(b"c", ord("s"), None, b"abc", struct.pack("<qq", 0, 2**62), 0)]),
        # offsets given for a fixed-width type
        (1, [(b"c", ord("i"), None, b"\x00" * 8, struct.pack("<qq", 0, 1), 0)]),
        # unknown tags
        (1, [(b"c", ord("q"), None, b"\x00" * 8, None, 0)]),
        (1, [(b"c", 0, None, b"\x00" * 8, None, 0)]),
        (1, [(b"c", 256 + ord("i"), None, b"\x00" * 8, None, 0)]),
        (1, [(b"c", -1, None, b"\x00" * 8, None, 0)]),
        (1, [(b"c", 2**80, None, b"\x00" * 8, None, 0)]),
        # bad offsets
        (1, [_i(b"\x00" * 8, offset=-1)]),
        (1, [_i(b"\x00" * 8, offset=2**62)]),
        (1, [_i(b"\x00" * 8, offset=2**80)]),
        # wrong tuple shape
        (1, [(b"c", ord("i"), None, b"\x00" * 8, None)]),
        (1, [(b"c", ord("i"), None, b"\x00" * 8, None, 0, 0)]),
        (1, [[b"c", ord("i"), None, b"\x00" * 8, None, 0]]),
        (1, ["not a tuple"]),
        (1, [None]),
        # invalid nrows
        (-1, []),
        (2**62, [_i(b"\x00" * 8)]),
    ],
)
def test_hash_rows_value_errors(nrows: int, cols: list) -> None:
    with pytest.raises(ValueError):
        _rowhash.hash_rows(nrows, cols)


@pytest.mark.parametrize(
    "cols",
    [
        [("c", ord("i"), None, b"\x00" * 8, None, 0)],  # str name
        [(b"c", "i", None, b"\x00" * 8, None, 0)],  # str tag
        [(b"c", ord("i"), None, "12345678", None, 0)],  # str data
        [(b"c", ord("i"), 5, b"\x00" * 8, None, 0)],  # int validity
        [(b"c", ord("s"), None, b"abc", [0, 1], 0)],  # list offsets
        [(b"c", ord("i"), None, b"\x00" * 8, None, "0")],  # str offset
        [(b"c", ord("i"), None, b"\x00" * 8, None, 0.0)],  # float offset
    ],
)
def test_hash_rows_type_errors(cols: list) -> None:
    with pytest.raises(TypeError):
        _rowhash.hash_rows(1, cols)


def test_hash_rows_argument_errors() -> None:
    good = [_i(b"\x00" * 8)]
    with pytest.raises(TypeError):
        _rowhash.hash_rows(1, None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _rowhash.hash_rows(1, 5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _rowhash.hash_rows("1", good)  # type: ignore[arg-type]
    for bad_len in (0, -1, 65):
        with pytest.raises(ValueError):
            _rowhash.hash_rows(1, good, bad_len)
    # columns may also be a tuple of tuples; still works after errors
    assert _rowhash.hash_rows(1, tuple(good)) == _rowhash.hash_rows(1, good)


def test_hash_rows_reads_only_needed_bytes() -> None:
    """Exactly-sized buffers are accepted (no over-read requirement)."""
    assert len(_rowhash.hash_rows(3, [_i(b"\x00" * 24, validity=b"\x07")])) == 48
    assert len(_rowhash.hash_rows(2, [_i(b"\x00" * 24, validity=b"\x06", offset=1)])) == 32
    offs = struct.pack("<qqq", 0, 1, 3)
    h = _rowhash.hash_rows(2, [(b"c", ord("s"), None, b"abc", offs, 0)])
    assert h == ref_hash_rows(2, [("c", "s", ["a", "bc"])])
    # null slots may carry garbage offsets: they are never read as strings
    offs = struct.pack("<qqq", 0, 99, -5)
    h = _rowhash.hash_rows(2, [(b"c", ord("s"), b"\x00", b"", offs, 0)])
    assert h == ref_hash_rows(2, [("c", "s", [None, None])])


# --------------------------------------------------------------------------
# Speed sanity (prints only; no timed assertions)
# --------------------------------------------------------------------------


def mixed_columns(n: int, seed: int = 0) -> list[tuple]:
    """12 mixed columns (6 numeric with ~10% nulls, 2 strings, bool, date, 2 timestamps)."""
    rng = random.Random(seed)
    ints = [rng.randrange(-(2**40), 2**40) for _ in range(n)]
    mask = pa.array([rng.random() < 0.1 for _ in range(n)])
    int_arr = pa.array(ints, pa.int64())
    float_arr = pa.array([rng.gauss(0.0, 1.0) for _ in range(n)], pa.float64())
    strs = pa.array([f"name-{i}" for i in range(n)], pa.large_string())
    cols = []
    for j in range(3):
        cols.append(column_tuple(f"i{j}", "i", pa.array(ints, pa.int64(), mask=mask)))
        cols.append(column_tuple(f"f{j}", "f", pa.array(float_arr.to_pylist(), mask=mask)))
    cols.append(column_tuple("s0", "s", strs))
    cols.append(column_tuple("s1", "s", strs.slice(1)))
    cols.append(column_tuple("b", "b", pa.array([x % 2 == 0 for x in ints])))
    cols.append(column_tuple("d", "d", pa.array([x % 30000 for x in ints], pa.date32())))
    cols.append(column_tuple("t", "t", int_arr.cast(pa.timestamp("us"))))
    cols.append(column_tuple("z", "z", int_arr.cast(pa.timestamp("us", tz="UTC"))))
    return cols


def test_hash_rows_speed_print() -> None:
    n = 100_000
    cols = mixed_columns(n + 1)
    assert len(cols) == 12
    t0 = time.perf_counter()
    out = _rowhash.hash_rows(n, cols)
    dt = time.perf_counter() - t0
    assert len(out) == 16 * n
    print(f"\nhash_rows: {n} rows x {len(cols)} cols in {dt:.3f}s = {n / dt:,.0f} rows/s")

"""CSV values as types: which logical type a column of text is, and its
values converted to it.

Every column is read as text; ``TypeInference`` keeps, per column, the
candidate types every value seen so far fits (narrowest first), so a stray
"n/a" on row 900,000 makes its column text instead of failing the import.
"""

from __future__ import annotations

import decimal
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.schema import MAX_DECIMAL_PRECISION, parse_type
from core.typed_values import from_json, parse_duration
from features.imports.errors import PreferenceMissed

# Narrowest first: the first candidate every value fits wins.
_ORDER = ("boolean", "integer", "float", "date", "datetime", "datetime_tz")


_LEADING_ZERO = r"^[+-]?0[0-9xX]"  # 007, 0x1f: identifiers, not numbers


_NOT_INTEGER = r"[.eEnNiI]"  # any float syntax: a decimal point, exponent, nan, inf


_TRUE_FALSE = pa.array(["true", "false"])


_PROBE_ROWS = 256


def strip_plus(arr: pa.Array) -> pa.Array:
    """Arrow's integer parser refuses a leading '+'; drop it."""
    return pc.replace_substring_regex(arr, pattern=r"^\+", replacement="")


def _cast_number(values: pa.Array, typ: pa.DataType) -> pa.Array:
    try:
        return pc.cast(values, typ)
    except pa.ArrowInvalid:
        if not pc.any(pc.starts_with(values, "+")).as_py():
            raise
        return pc.cast(strip_plus(values), typ)


def convert(arr: pa.Array, kind: str) -> pa.Array | None:
    """``arr`` (text) as ``kind``, or None when some non-null value is not a ``kind``.

    Casts first (Arrow's parsers are strict and stop at the first bad value),
    then rules out what the casts would accept but people do not mean as
    numbers: leading zeros (zip codes, ids) and hex.
    """
    if kind == "string":
        return arr
    if len(arr) > _PROBE_ROWS and convert(arr.slice(0, _PROBE_ROWS), kind) is None:
        return None  # a failing cast of a whole batch costs ~100x a succeeding one
    try:
        if kind == "boolean":
            lower = pc.utf8_lower(arr)
            if not pc.all(pc.is_in(lower.drop_null(), _TRUE_FALSE), min_count=0).as_py():
                return None
            return pc.equal(lower, "true")
        if kind in ("integer", "float"):
            out = _cast_number(arr, pa.int64() if kind == "integer" else pa.float64())
            return None if _leading_zeros(arr) else out
        if kind == "date":
            return pc.cast(arr, pa.date32())  # strict: 2024-02-30 is refused
        if kind == "datetime":
            return pc.cast(arr, pa.timestamp("us"))  # ISO 8601 without a zone
        if kind == "datetime_tz":
            return pc.cast(arr, pa.timestamp("us", tz="UTC"))  # needs Z or an offset
        return convert_exact(arr, kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?$"


def convert_exact(arr: pa.Array, kind: str) -> pa.Array | None:
    """Text as one of the exact or nested types (declared by ``column_types``
    or kept from the table; never inferred): decimals by Arrow's exact parser
    (a value needing more scale than the type has is refused, never rounded),
    times as ``HH:MM[:SS[.ffffff]]``, durations as ISO 8601 or microseconds,
    lists and structs as JSON."""
    spec = parse_type(kind)
    if spec.kind == "decimal":
        return pc.cast(arr, spec.arrow())
    if spec.kind == "time":
        if not pc.all(pc.match_substring_regex(arr.drop_null(), _TIME), min_count=0).as_py():
            return None
        day, empty = pa.scalar("1970-01-01T", arr.type), pa.scalar("", arr.type)
        stamped = pc.binary_join_element_wise(day, arr, empty)
        return pc.cast(pc.cast(stamped, pa.timestamp("us")), spec.arrow(), safe=False)
    values: list[Any] = []
    for v in arr.to_pylist():
        if v is None:
            values.append(None)
            continue
        try:
            if spec.kind == "duration":
                values.append(parse_duration(v))
            else:  # a list or struct in JSON, its items as the data API writes them
                # (numbers read as decimals: no float rounds them on the way)
                values.append(from_json(json.loads(v, parse_float=decimal.Decimal), spec))
        except (ValueError, RecursionError, OverflowError):
            return None
    try:
        return pa.array(values, spec.arrow())
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
        return None


def _leading_zeros(arr: pa.Array) -> bool:
    """Whether a value like 007 or 0x1f is present (a cheap screen first: only a
    value starting with 0 and longer than "0", or with a sign, needs the regex)."""
    suspect = pc.and_(pc.starts_with(arr, "0"), pc.greater(pc.binary_length(arr), 1))
    if not (
        pc.any(suspect).as_py()
        or pc.any(pc.starts_with(arr, "-0")).as_py()
        or pc.any(pc.starts_with(arr, "+0")).as_py()
    ):
        return False
    return bool(pc.any(pc.match_substring_regex(arr, _LEADING_ZERO)).as_py())


def fits(arr: pa.Array, kind: str) -> bool:
    return convert(arr, kind) is not None


@dataclass
class TypeInference:
    """Per column, the candidate types every value seen so far fits."""

    names: list[str]
    forced: dict[str, str] = field(default_factory=dict)
    # a re-upload's columns keep the table's types when every value fits them
    # (decision 0014): a column whose value does not raises PreferenceMissed
    preferred: dict[str, str] = field(default_factory=dict)
    candidates: list[list[str]] = field(default_factory=list)
    int_like: list[bool] = field(default_factory=list)
    # number columns (integers so far, or floats): (most digits before the
    # point, most after, a value with more than FLOAT_DIGITS significant
    # digits seen), None once a value is not fixed-point
    fixed: list[tuple[int, int, bool] | None] = field(default_factory=list)
    has_values: list[bool] = field(default_factory=list)
    has_nulls: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.candidates = [
            [self.forced[n]] if n in self.forced else list(_ORDER) for n in self.names
        ]
        self.int_like = [True for _ in self.names]
        self.fixed = [(0, 0, False) for _ in self.names]
        self.has_values = [False for _ in self.names]
        self.has_nulls = [False for _ in self.names]

    def update(self, batch: pa.RecordBatch) -> list[pa.Array | None]:
        """Narrow the candidates by one batch; returns the batch converted to the
        current best type of each column (None where that is text)."""
        typed: list[pa.Array | None] = []
        for i, name in enumerate(self.names):
            col = batch.column(i)
            nulls = col.null_count
            self.has_nulls[i] = self.has_nulls[i] or nulls > 0
            self.has_values[i] = self.has_values[i] or nulls < len(col)
            if name in self.forced:
                typed.append(self._forced(col, i, self.forced[name]))
                continue
            if name in self.preferred:
                out = convert(col, self.preferred[name])
                if out is None:
                    raise PreferenceMissed(name)
                typed.append(out)
                continue
            out = None
            cands = self.candidates[i]
            while cands:
                out = convert(col, cands[0])
                if out is not None:
                    break
                cands.pop(0)  # a type that fails is dropped for good
            if cands and cands[0] == "float" and self.int_like[i]:
                values = col.drop_null()
                self.int_like[i] = self.int_like[i] and not (
                    pc.any(pc.match_substring_regex(values, _NOT_INTEGER)).as_py()
                )
            if cands and cands[0] in ("integer", "float") and (seen := self.fixed[i]) is not None:
                # measured while still integers too: a later decimal needs their digits
                shape = fixed_point_shape(col) if cands[0] == "float" else _integer_shape(col)
                self.fixed[i] = None if shape is None else _widest(seen, shape)
            typed.append(out)
        return typed

    def _forced(self, col: pa.Array, i: int, kind: str) -> pa.Array:
        out = convert(col, kind)
        if out is None:
            raise BadValue(i)
        return out

    def result(self) -> list[str]:
        out = []
        for i, cands in enumerate(self.candidates):
            name = self.names[i]
            if name in self.forced or name in self.preferred:
                out.append(self.forced.get(name) or self.preferred[name])
                continue
            # a column of nothing but nulls is text: nothing says otherwise
            kind = cands[0] if cands and self.has_values[i] else "string"
            # integers too large for int64 stay exact as text, never rounded floats
            if kind == "float" and self.int_like[i]:
                kind = "string"
            elif kind == "float" and (shape := self.fixed[i]) is not None and shape[2]:
                before, after, _ = shape
                if before + after <= MAX_DECIMAL_PRECISION:  # else a float, as before
                    kind = f"decimal({max(before + after, 1)},{after})"
            out.append(kind)
        return out


# a float64 written in full (its shortest round-trip text, as Python, polars,
# pandas and Ryu-based writers do) has at most 17 significant digits: text
# with more was written as an exact decimal, and a float would round it
FLOAT_DIGITS = 17
_SIGN = np.zeros(256, dtype=bool)
_SIGN[list(b"+-")] = True


def fixed_point_shape(arr: pa.Array) -> tuple[int, int, bool] | None:
    """Of a batch of number text (a column still taken for ``float``): the most
    digits before the decimal point, the most after it, and whether a value
    has more than ``FLOAT_DIGITS`` significant digits (leading zeros not
    counted); None when a value is not plain fixed-point notation. NumPy over
    the Arrow buffers (~10 ms a million values): the rule that makes such a
    column ``decimal``."""
    n = len(arr)
    if n == 0 or arr.null_count == n:
        return (0, 0, False)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    start, end = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(bufs[2], dtype=np.uint8, count=end - start, offset=start)
    # the batch parsed as floats: any byte above "9" is a letter (an exponent,
    # nan, inf); digits, ".", "+" and "-" are all below it
    if len(data) and int(data.max()) > ord("9"):
        return None
    lengths = np.diff(offsets)  # a null's is 0
    firsts = np.minimum(offsets[:-1] - start, max(len(data) - 1, 0))
    signed = (lengths > 0) & _SIGN[data[firsts]] if len(data) else np.zeros(n, dtype=bool)
    found = pc.find_substring(arr, ".")
    dot = (found.fill_null(-1) if found.null_count else found).to_numpy(zero_copy_only=False)
    has_dot = dot >= 0
    after = np.where(has_dot, lengths - dot - 1, 0)
    before = np.where(has_dot, dot, lengths) - signed
    if not ((before + after) > FLOAT_DIGITS).any():  # the usual batch: no long value
        return int(before.max()), int(after.max()), False
    return (
        int(before.max()),
        int(after.max()),
        _significant(data, firsts, signed, dot, before, after),
    )


def _significant(
    data: np.ndarray, firsts: np.ndarray, signed: np.ndarray, dot: np.ndarray,
    before: np.ndarray, after: np.ndarray,
) -> bool:  # fmt: skip
    """Whether a value has more than ``FLOAT_DIGITS`` significant digits: an
    integer part of ``0`` and the zeros right after the point do not count
    (``0.000123`` has 3). Only the long values are looked at, and of those
    only the ones starting ``0.`` digit by digit."""
    last = len(data) - 1
    long = np.flatnonzero(before + after > FLOAT_DIGITS)
    first_digit = data[np.minimum(firsts[long] + signed[long], last)]
    zero_int = (before[long] == 0) | ((before[long] == 1) & (first_digit == ord("0")))
    if not zero_int.all():
        return True  # a long value with a non-zero integer part (no leading zeros: not a float)
    idx = long[dot[long] >= 0]  # "0.ddd…": the digits after the point, less its leading zeros
    at = firsts[idx] + dot[idx]
    digits = after[idx]
    for k in range(1, 40):
        if not len(idx):
            break
        zero = (k <= after[idx]) & (data[np.minimum(at + k, last)] == ord("0"))
        done = ~zero
        if (digits[done] - (k - 1) > FLOAT_DIGITS).any():
            return True
        idx, at, digits = idx[zero], at[zero], digits[zero]
    return False


def _integer_shape(arr: pa.Array) -> tuple[int, int, bool]:
    """``fixed_point_shape`` of a batch that parsed as integers, from its
    lengths alone (a sign counted as a digit: a precision one too many at
    worst)."""
    n = len(arr)
    if n == 0 or arr.null_count == n:
        return (0, 0, False)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64, count=n + 1, offset=arr.offset * 8)
    longest = int(np.diff(offsets).max())
    return longest, 0, longest > FLOAT_DIGITS


def _widest(a: tuple[int, int, bool], b: tuple[int, int, bool]) -> tuple[int, int, bool]:
    return max(a[0], b[0]), max(a[1], b[1]), a[2] or b[2]


class BadValue(Exception):
    """A value of column ``column`` is not its declared type."""

    def __init__(self, column: int) -> None:
        self.column = column

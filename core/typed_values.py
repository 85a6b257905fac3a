"""Values of the exact and nested types: their row-encoding bytes and text.

The row encoding (docs/hash-spec.md, tags ``n``, ``l``, ``r``) hashes a
decimal, list or struct value as length-prefixed bytes built here:

- decimal: u8 precision, u8 scale, the unscaled value as 16 bytes of
  little-endian two's complement (Arrow's own ``decimal128`` layout);
- list: u8 item tag, u64 item count, then per item a presence byte and, when
  present, the item's value bytes;
- struct: u32 field count, then per field u32 name length, the UTF-8 name,
  u8 tag, a presence byte and the value bytes (a row's own column layout).

Item and field values use the row encoding's value bytes for their tag (strings,
binaries and nested values length-prefixed with a u64). Decimals are built from
Arrow's buffers in one NumPy pass; lists and structs, which are rare, value by
value.

Durations are written as ISO 8601 (``P1DT2H3M4.5S``, ``-PT0.000001S``) and
read from that form or from a count of microseconds.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import json
import math
import re
import struct
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    from core.schema import TypeSpec

_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)


def value_bytes(arr: pa.Array, spec: TypeSpec) -> pa.Array:
    """``arr`` (in ``spec``'s storage type) as a ``large_binary`` array of the
    values' encoding bytes, nulls where ``arr`` has them, offset 0."""
    if arr.offset:
        arr = pa.concat_arrays([arr])  # rebased: the validity bitmap starts at row 0
    n = len(arr)
    validity = arr.buffers()[0] if arr.null_count else None
    if spec.kind == "decimal":
        raw = np.frombuffer(arr.buffers()[1], dtype=np.uint8)[: n * 16].reshape(n, 16)
        data = np.empty((n, 18), dtype=np.uint8)
        data[:, 0] = spec.precision
        data[:, 1] = spec.scale
        data[:, 2:] = raw
        offsets = np.arange(0, 18 * (n + 1), 18, dtype=np.int64)
        return pa.Array.from_buffers(
            pa.large_binary(),
            n,
            [validity, pa.py_buffer(offsets), pa.py_buffer(data)],
            null_count=arr.null_count,
        )
    values = [None if v is None else _encode(v, spec) for v in arr.to_pylist()]
    return pa.array(values, pa.large_binary())


def _encode(v: Any, spec: TypeSpec, inner: bool = False) -> bytes:
    """The value bytes of one present value of type ``spec`` (``inner``: an item
    or field, whose nested values carry their u64 length themselves)."""
    k = spec.kind
    if k == "integer":
        return struct.pack("<q", v)
    if k == "float":
        if math.isnan(v):
            return b"\x00\x00\x00\x00\x00\x00\xf8\x7f"
        return struct.pack("<d", 0.0 if v == 0 else v)
    if k == "boolean":
        return b"\x01" if v else b"\x00"
    if k in ("string", "binary"):
        b = v.encode() if k == "string" else bytes(v)
        return struct.pack("<Q", len(b)) + b
    if k == "date":
        return struct.pack("<i", (v - dt.date(1970, 1, 1)).days)
    if k == "datetime":
        return struct.pack("<q", (v.replace(tzinfo=None) - _EPOCH) // _US)
    if k == "datetime_tz":
        return struct.pack("<q", (v - _EPOCH_UTC) // _US)
    if k == "time":
        return struct.pack("<q", time_us(v))
    if k == "duration":
        return struct.pack("<q", v // _US)
    if k == "decimal":
        with decimal.localcontext(prec=80):  # the default 28 digits would round 38
            unscaled = int(v.scaleb(spec.scale))
        return bytes((spec.precision, spec.scale)) + unscaled.to_bytes(16, "little", signed=True)
    if k == "list":
        assert spec.item is not None
        parts = [spec.item.tag.encode(), struct.pack("<Q", len(v))]
        for item in v:
            parts.append(_present(item, spec.item))
        return _prefixed(b"".join(parts), inner)
    if k == "struct":
        parts = [struct.pack("<I", len(spec.fields))]
        for name, field in spec.fields:
            nb = name.encode()
            parts += [struct.pack("<I", len(nb)), nb, field.tag.encode()]
            parts.append(_present(v.get(name), field))
        return _prefixed(b"".join(parts), inner)
    raise ValueError(f"no value encoding for {k}")


def _present(v: Any, spec: TypeSpec) -> bytes:
    return b"\x00" if v is None else b"\x01" + _encode(v, spec, inner=True)


def _prefixed(b: bytes, inner: bool) -> bytes:
    # a column's value is length-prefixed by the row encoding itself
    return struct.pack("<Q", len(b)) + b if inner else b


def time_us(t: dt.time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


def duration_iso(d: dt.timedelta) -> str:
    """``d`` in ISO 8601 (days, hours, minutes, seconds with up to six decimals)."""
    us = d // _US
    sign = "-" if us < 0 else ""
    us = abs(us)
    days, rest = divmod(us, 86_400_000_000)
    hours, rest = divmod(rest, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, micros = divmod(rest, 1_000_000)
    out = f"{sign}P{days}D" if days else f"{sign}P"
    clock = ""
    if hours:
        clock += f"{hours}H"
    if minutes:
        clock += f"{minutes}M"
    if seconds or micros or not (days or clock):
        frac = f".{micros:06d}".rstrip("0") if micros else ""
        clock += f"{seconds}{frac}S"
    return out + ("T" + clock if clock else "")


_ISO_DURATION = re.compile(
    r"^([+-])?P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)(?:\.(\d{1,6}))?S)?)?$"
)


def parse_duration(text: str) -> dt.timedelta:
    """A duration from ISO 8601 (``P1DT2H``, ``PT0.5S``; no years or months,
    which have no fixed length) or a whole number of microseconds."""
    s = text.strip()
    if re.fullmatch(r"[+-]?\d{1,19}", s):
        return _bounded(int(s), text)
    m = _ISO_DURATION.match(s.upper())
    sign, weeks, days, hours, minutes, seconds, frac = m.groups() if m else (None,) * 7
    if not m or s.upper().endswith("T") or not any((weeks, days, hours, minutes, seconds)):
        raise ValueError(f"{text!r} is not an ISO 8601 duration (e.g. P1DT2H30M) or microseconds")
    us = (
        (int(weeks or 0) * 7 + int(days or 0)) * 86_400_000_000
        + int(hours or 0) * 3_600_000_000
        + int(minutes or 0) * 60_000_000
        + int(seconds or 0) * 1_000_000
        + int((frac or "").ljust(6, "0") or 0)
    )
    return _bounded(-us if sign == "-" else us, text)


_US_MAX = 2**63 - 1


def _bounded(us: int, text: str) -> dt.timedelta:
    """A duration of ``us`` microseconds, which must fit 64 bits (the stored
    unit) and Python's ±999,999,999 days."""
    if abs(us) > _US_MAX:
        raise ValueError(f"{text!r} is beyond the longest duration (about 292,000 years)")
    try:
        return dt.timedelta(microseconds=us)
    except OverflowError:
        raise ValueError(f"{text!r} is beyond the longest duration") from None


def decimal_text(v: decimal.Decimal) -> str:
    """A decimal's exact text, plain notation (``1E+3`` at scale 0 -> ``1000``)."""
    return format(v, "f")


def _json_default(v: Any) -> Any:
    if isinstance(v, decimal.Decimal):
        return decimal_text(v)
    if isinstance(v, dt.timedelta):
        return duration_iso(v)
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.hex()
    raise TypeError(type(v).__name__)


def as_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Any column as ``large_string``: Arrow's cast where it has one, else
    (durations, which Arrow would write as a count; lists, structs) the text of
    each value as JSON writes it."""
    if not (pa.types.is_duration(arr.type) or pa.types.is_nested(arr.type)):
        try:
            return arr.cast(pa.large_string())
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            pass
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    out: list[str | None] = []
    for v in arr.to_pylist():
        if v is None:
            out.append(None)
        elif isinstance(v, dt.timedelta):
            out.append(duration_iso(v))
        else:
            out.append(
                json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=_json_default)
            )
    return pa.array(out, pa.large_string())


def from_json(v: Any, spec: TypeSpec) -> Any:
    """A value in its JSON form (the data API's: decimals and durations as
    text, binary as base64) as the Python value Arrow builds ``spec`` from;
    ``ValueError`` when it is not one."""
    if v is None:
        return None
    k = spec.kind
    if k == "decimal":
        if isinstance(v, bool) or not isinstance(v, int | float | str | decimal.Decimal):
            raise ValueError(f"{v!r} is not a decimal")
        try:
            return decimal.Decimal(str(v))
        except decimal.InvalidOperation:
            raise ValueError(f"{v!r} is not a decimal") from None
    if k == "list":
        if not isinstance(v, list):
            raise ValueError(f"{v!r} is not a list")
        assert spec.item is not None
        return [from_json(x, spec.item) for x in v]
    if k == "struct":
        if not isinstance(v, dict) or set(v) - {n for n, _ in spec.fields}:
            raise ValueError(f"{v!r} is not an object of the struct's fields")
        return {n: from_json(v.get(n), t) for n, t in spec.fields}
    if k in ("integer", "float", "boolean") or not isinstance(v, str):
        return _scalar(v, k)
    if k == "duration":
        return parse_duration(v)
    if k == "time":
        return dt.time.fromisoformat(v)
    if k == "date":
        return dt.date.fromisoformat(v)
    if k in ("datetime", "datetime_tz"):
        return dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
    if k == "binary":
        try:
            return base64.b64decode(v, validate=True)
        except binascii.Error:
            raise ValueError(f"{v!r} is not base64") from None
    return v


def _scalar(v: Any, k: str) -> Any:
    """A JSON number, boolean or special float text as ``k``; ``ValueError``
    for anything that would change on the way (1.7 as an integer)."""
    if k == "boolean":
        if isinstance(v, bool):
            return v
    elif isinstance(v, bool):
        pass
    elif k == "integer":
        if isinstance(v, str) and re.fullmatch(r"-?\d{1,20}", v):
            return int(v)  # beyond 2^53 the data API writes digits as text
        if isinstance(v, int) or (isinstance(v, decimal.Decimal) and v == v.to_integral_value()):
            return int(v)
    elif k == "float":
        if isinstance(v, str) and v in ("NaN", "Infinity", "-Infinity"):
            return float(v.replace("Infinity", "inf"))
        if isinstance(v, int | float | decimal.Decimal):
            return float(v)
    raise ValueError(f"{v!r} is not a {k}")

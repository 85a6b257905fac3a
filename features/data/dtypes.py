"""The polars dtype each logical type is read as (filters, sorts, queries),
and the literals of the exact types in filters."""

from __future__ import annotations

import datetime as dt
import decimal
import re
from typing import Any

import polars as pl

from core.schema import MAX_DECIMAL_PRECISION, TypeSpec, parse_type
from core.typed_values import parse_duration

_DECIMAL = re.compile(r"[+-]?(?:\d{1,38}(?:\.\d{0,38})?|\.\d{1,38})")
_TIME = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?")

_POLARS: dict[str, Any] = {
    "integer": pl.Int64,
    "float": pl.Float64,
    "boolean": pl.Boolean,
    "string": pl.String,
    "binary": pl.Binary,
    "date": pl.Date,
    "datetime": pl.Datetime("us"),
    "datetime_tz": pl.Datetime("us", "UTC"),
    "time": pl.Time,
    "duration": pl.Duration("us"),
}


def polars_type(logical: str) -> Any:
    """The polars dtype a column of ``logical`` type is read as."""
    found = _POLARS.get(logical)
    return found if found is not None else _polars_of(parse_type(logical))


def _polars_of(spec: TypeSpec) -> Any:
    if spec.kind == "decimal":
        return pl.Decimal(spec.precision, spec.scale)
    if spec.kind == "list":
        assert spec.item is not None
        return pl.List(_polars_of(spec.item))
    if spec.kind == "struct":
        return pl.Struct({n: _polars_of(t) for n, t in spec.fields})
    return _POLARS[spec.kind]


def exact_literal(text: str, token: str, spec: TypeSpec) -> Any:
    """A filter's literal (``token`` its kind: ``number`` or ``quoted``) as a
    value of a decimal (a number, quoted or not, of at most 38 digits:
    compared exactly, never through a float), time ('HH:MM[:SS[.ffffff]]') or
    duration (ISO 8601, or whole microseconds) column; ``ValueError`` saying
    what was expected."""
    if spec.kind == "decimal":
        if token in ("number", "quoted") and _DECIMAL.fullmatch(text.strip()):
            value = decimal.Decimal(text.strip())
            if len(value.as_tuple().digits) > MAX_DECIMAL_PRECISION:
                raise ValueError("expected a number of at most 38 digits")
            return value
        raise ValueError("expected a number such as 12.50")
    if spec.kind == "time":
        if token == "quoted" and _TIME.fullmatch(text):
            try:
                return dt.time.fromisoformat(text)
            except ValueError:
                pass
        raise ValueError("expected a time 'HH:MM[:SS[.ffffff]]'")
    if token in ("number", "quoted"):
        try:
            return parse_duration(text)
        except (ValueError, OverflowError):
            pass
    raise ValueError("expected a duration such as 'PT1H30M' or microseconds")


def fits(v: decimal.Decimal, spec: TypeSpec) -> bool:
    """Whether ``v`` is a value of ``decimal(P,S)`` (no more scale, no more
    integer digits)."""
    v = v.normalize() if v else decimal.Decimal(0)
    exp = int(v.as_tuple().exponent)
    whole = len(v.as_tuple().digits) + exp  # digits before the point
    return -exp <= spec.scale and whole <= spec.precision - spec.scale

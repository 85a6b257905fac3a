"""The polars dtype each logical type is read as (filters, sorts, queries)."""

from __future__ import annotations

from typing import Any

import polars as pl

from core.schema import TypeSpec, parse_type

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

"""Chunk skipping for filtered pages: each chunk's extremes per column.

A filter on a big table scans every chunk's filter columns (``query``);
polars skips row groups whose statistics rule the filter out, but still
opens every file. ``may_match`` first tests the filter's zone expression
(``filters.parse_filter_zones``) against each chunk's minimum and maximum of
the columns it compares, taken from the Parquet footer's row-group
statistics (written with every chunk), and only the chunks it cannot rule
out are scanned: a selective filter on a sorted or clustered column (ids,
dates) of a 100M-row table reads a chunk or two, not 763.

Extremes are kept per (chunk, column) in an LRU (chunks never change), so
a footer is read once per process. A chunk without statistics for the
column (all nulls, a value too long for the writer to keep) may match.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import structlog

from core.chunks import footer
from core.lru import LRU
from core.schema import Column, kind_of, parse_type
from core.storage import ObjectStore
from features.data.dtypes import fits, polars_type

log = structlog.get_logger(__name__)
_NOTHING = (None, None)


def zone_min(column: str) -> str:
    return f"{column}\0min"


def zone_max(column: str) -> str:
    return f"{column}\0max"


# kinds whose Parquet min/max order is the filter's (floats may hold NaN)
ZONE_KINDS = frozenset({"integer", "date", "time", "string", "decimal"})
ZONE_MAX_VALUES = 64


def zone_of(col: Column, op: str, values: list[Any]) -> pl.Expr | None:
    """What ``col op value`` asks of a chunk's extremes (an expression over
    ``zone_min(col)``/``zone_max(col)``); None when it cannot say."""
    kind = kind_of(col.type)
    if kind not in ZONE_KINDS or op == "!=" or len(values) > ZONE_MAX_VALUES:
        return None
    if not all(_exact_in(v, col, kind) for v in values):
        return None  # `n < 1.5` on integers: the value as the column's type would round it
    lo, hi = pl.col(zone_min(col.name)), pl.col(zone_max(col.name))
    dtype = polars_type(col.type)
    parts = []
    for value in values:
        try:
            v = pl.lit(value, dtype=dtype)
        except Exception:  # noqa: BLE001 - a shortcut only: the filter decides
            return None
        if op in ("=", "in"):
            parts.append((lo <= v) & (hi >= v))
        elif op == "<":
            parts.append(lo < v)
        elif op == "<=":
            parts.append(lo <= v)
        elif op == ">":
            parts.append(hi > v)
        else:
            parts.append(hi >= v)
    return pl.any_horizontal(parts) if len(parts) > 1 else parts[0]


def _exact_in(value: Any, col: Column, kind: str) -> bool:
    """Whether ``value`` is a value of ``col``'s type as it is (compared with
    a chunk's extremes in that type without rounding)."""
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if kind == "decimal":
        return isinstance(value, decimal.Decimal) and fits(value, parse_type(col.type))
    return True


_extremes: LRU[tuple[str, str], tuple[Any, Any]] = LRU(
    max_items=1_000_000, max_bytes=64 * 1024**2, size_of=lambda t: 64 + sum(len(str(v)) for v in t)
)


def may_match(
    store: ObjectStore,
    chunks: Sequence[str],
    zone: pl.Expr | None,
    types: dict[str, str],
    object_key: Callable[[str], str],
) -> np.ndarray:
    """For each chunk, whether it may hold a row passing the filter whose
    zone expression is ``zone`` (all True without one)."""
    keep = np.ones(len(chunks), dtype=bool)
    if zone is None or not len(chunks):
        return keep
    columns = sorted({n.rsplit("\0", 1)[0] for n in zone.meta.root_names()})
    data: dict[str, pl.Series] = {}
    try:
        for c in columns:
            got = [extremes(store, object_key(cid), c) for cid in chunks]
            dtype = polars_type(types[c])
            data[zone_min(c)] = pl.Series([g[0] for g in got], dtype=dtype, strict=False)
            data[zone_max(c)] = pl.Series([g[1] for g in got], dtype=dtype, strict=False)
        tested = pl.DataFrame(data).select(zone.fill_null(True)).to_series()
        return tested.fill_null(True).to_numpy().astype(bool)
    except Exception:  # a cache of a shortcut: when in doubt, scan everything
        log.warning("chunk extremes not usable; scanning every chunk", exc_info=True)
        return keep


def extremes(store: ObjectStore, key: str, column: str) -> tuple[Any, Any]:
    """The minimum and maximum of ``column`` in the chunk stored at ``key``
    (``(None, None)`` when its footer does not say)."""
    got = _extremes.get((key, column))
    if got is None:
        got = _read(store, key, column)
        _extremes.put((key, column), got)
    return got


def _read(store: ObjectStore, key: str, column: str) -> tuple[Any, Any]:
    # the footer not kept in the chunks' cache: the extremes are kept here
    meta = footer(store, key, keep=False)
    fields = meta.schema.to_arrow_schema()
    k = fields.get_field_index(column)
    if k < 0 or meta.num_row_groups == 0 or pa.types.is_nested(fields.field(k).type):
        return _NOTHING
    # the column's leaf: after every leaf of the fields before it (a
    # dotted path would confuse a column `a.b` with a struct's field)
    j = sum(_leaves(fields.field(i).type) for i in range(k))
    lows, highs = [], []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(j).statistics
        if stats is None or not stats.has_min_max:
            if stats is not None and stats.null_count == meta.row_group(g).num_rows:
                continue  # all null: no value to pass a comparison
            return _NOTHING
        lows.append(stats.min)
        highs.append(stats.max)
    if not lows:
        return _NOTHING
    return min(lows), max(highs)


def _leaves(t: pa.DataType) -> int:
    """How many Parquet leaf columns a field of type ``t`` is stored as."""
    if pa.types.is_struct(t):
        return sum(_leaves(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_map(t):
        return _leaves(t.key_type) + _leaves(t.item_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _leaves(t.value_type)
    return 1

"""Parquet uploads, read row group by row group (bounded memory).

Arrow types map onto DSA's logical types (docs/api.md, "Parquet"):

- signed and unsigned integers up to 64 bits -> integer (a uint64 column with a
  value above 2^63-1 becomes exact text instead);
- float16/32/64 -> float; bool -> boolean; date32/64 -> date;
- timestamps without a zone -> datetime, with a zone -> datetime_tz (UTC), both
  in microseconds (finer units are truncated toward zero);
- string, large_string, string_view -> string; binary kinds -> binary;
- decimals of up to 38 digits -> decimal(P,S), exact (decimal128); wider ones
  or negative scales -> string holding the exact decimal text;
- time -> time, duration -> duration (microseconds; finer units truncated);
- lists (of every kind) -> list<T>, structs -> struct<...> when every item and
  field has a type here (nested at most 8 levels);
- dictionary columns -> their value type;
- intervals and null columns -> string (ISO-like text; null); maps, and nested
  columns holding something without a type here -> string holding canonical
  JSON (keys in their stored order for structs, maps as [[key, value], ...]).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pyarrow.types as pat

from core.schema import arrow_type, logical_of_arrow
from features.imports.csv_problems import check_forced_columns, check_width
from features.imports.errors import ImportFailed

BATCH_ROWS = 65_536
_INT64_MAX = 2**63 - 1


def logical_type(t: pa.DataType) -> str:
    """The logical type a Parquet column imports as (text where DSA has none)."""
    return logical_of_arrow(t) or "string"


def _json_default(v: Any) -> Any:
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return v.total_seconds()
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, bytes):
        return v.hex()
    raise TypeError(type(v).__name__)


def _to_json_text(arr: pa.Array) -> pa.Array:
    """Nested values as canonical JSON text (the only per-value Python here)."""
    out = [
        None
        if v is None
        else json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=_json_default)
        for v in arr.to_pylist()
    ]
    return pa.array(out, pa.large_string())


def _truncating(arr: pa.Array, to: pa.DataType) -> pa.Array:
    """``arr`` cast to ``to``, finer time units truncated to microseconds; a
    value that would overflow (a nested uint64 above 2^63-1, a duration or
    timestamp beyond int64 microseconds) or a decimal that would lose digits
    is an error, never a wrapped value."""
    return pc.cast(arr, options=pc.CastOptions(target_type=to, allow_time_truncate=True))


def convert(arr: pa.Array, kind: str, name: str) -> tuple[pa.Array, str]:
    """``arr`` in the storage type of ``kind`` (and the kind it really got)."""
    t = arr.type
    if pat.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if kind == "integer":
        return pc.cast(arr, pa.int64()), kind
    if kind == "float":
        return pc.cast(arr, pa.float64()), kind
    if kind == "boolean":
        return arr, kind
    if kind == "date":
        return pc.cast(arr, pa.date32()), kind
    if kind == "datetime":
        return _truncating(arr, pa.timestamp("us")), kind
    if kind == "datetime_tz":
        return _truncating(arr, pa.timestamp("us", tz="UTC")), kind
    if kind == "binary":
        return pc.cast(arr, pa.large_binary()), kind
    if kind != "string":  # time, duration, decimal(P,S), list<T>, struct<...>
        return _truncating(arr, arrow_type(kind)), kind
    # string: text kinds cast; decimals and times through Arrow's own formatting;
    # nested ones as JSON
    if pat.is_nested(t):
        return _to_json_text(arr), "string"
    if pat.is_null(t):
        return pa.nulls(len(arr), pa.large_string()), "string"
    try:
        return pc.cast(arr, pa.large_string()), "string"
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        return _to_json_text(arr), "string"


class ParquetSource:
    """A Parquet file as a stream of (batch, batch converted to its final types);
    the same interface as ``csv_reader.CsvSource``."""

    def __init__(
        self,
        path: Path,
        *,
        options: dict[str, Any],
        fmt: str,
        on_bytes: Callable[[int], None],
        types: dict[str, str] | None = None,
    ) -> None:
        self.path = path
        self.on_bytes = on_bytes
        try:
            self.file = pq.ParquetFile(str(path))
        except (pa.ArrowInvalid, OSError) as exc:
            raise ImportFailed(
                f"the file is not a readable Parquet file: {exc}", code="corrupt_parquet"
            ) from None
        schema = self.file.schema_arrow
        self.names = list(schema.names)
        check_width(len(self.names))
        _check_names(self.names)
        self._types = [logical_type(f.type) for f in schema]
        for j, f in enumerate(schema):
            if f.type == pa.uint64() and not self._uint64_fits(j):
                self._types[j] = "string"  # exact text rather than a wrapped integer
        forced = options.get("column_types") or {}
        check_forced_columns(forced, self.names)
        fixed = {**forced, **(types or {})}
        self._types = [fixed.get(n, t) for n, t in zip(self.names, self._types, strict=True)]
        self._nulls = [False] * len(self.names)
        self.rows = 0
        self.dialect: dict[str, Any] = {
            "format": "parquet",
            "row_groups": self.file.metadata.num_row_groups,
            "arrow_schema": [f"{f.name}: {f.type}" for f in schema],
        }

    def _uint64_fits(self, j: int) -> bool:
        """Whether every value of uint64 column ``j`` fits int64 (from the row
        groups' statistics, else by reading just that column)."""
        meta = self.file.metadata
        for i in range(meta.num_row_groups):
            stats = meta.row_group(i).column(j).statistics
            if stats is not None and stats.has_min_max:
                high = stats.max
            else:
                high = pc.max(self.file.read_row_group(i, columns=[self.names[j]]).column(0))
                high = high.as_py()
            if high is not None and high > _INT64_MAX:
                return False
        return True

    def types(self) -> list[str]:
        return list(self._types)

    def nullable(self) -> list[bool]:
        return list(self._nulls)

    def __iter__(self) -> Iterator[tuple[pa.RecordBatch, list[pa.Array | None]]]:
        size = self.path.stat().st_size
        groups = max(self.file.metadata.num_row_groups, 1)
        try:
            for i in range(self.file.metadata.num_row_groups):
                for batch in self.file.iter_batches(batch_size=BATCH_ROWS, row_groups=[i]):
                    typed: list[pa.Array | None] = []
                    for j, name in enumerate(self.names):
                        try:
                            arr, _ = convert(batch.column(j), self._types[j], name)
                        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                            raise ImportFailed(
                                f"column {name!r} cannot be read as {self._types[j]}: {exc}",
                                code="bad_value",
                                column=name,
                                row=self.rows + 1,
                            ) from None
                        self._nulls[j] = self._nulls[j] or arr.null_count > 0
                        typed.append(arr)
                    self.rows += batch.num_rows
                    yield batch, typed
                self.on_bytes(size * (i + 1) // groups)
        except (pa.ArrowInvalid, OSError) as exc:
            raise ImportFailed(
                f"the Parquet file is damaged: {exc}", code="corrupt_parquet"
            ) from None


def _check_names(names: list[str]) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if not n.strip():
            raise ImportFailed(
                f"column {i + 1} has no name", code="blank_column_name", column=i + 1
            )
        if "\x00" in n:
            raise ImportFailed(
                f"the name of column {i + 1} holds a NUL character",
                code="invalid_column_name",
                column=i + 1,
            )
        if n in seen:
            raise ImportFailed(
                f"the file names column {n!r} twice", code="duplicate_column_name", column=i + 1
            )
        seen.add(n)

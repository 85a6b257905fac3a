"""Reading a version: its tables and pages of rows at any ref.

A page is found by binary search over the manifest's cumulative row counts;
only the row groups that hold the page are decoded (and cached, see
``core.chunks``).

JSON values: integers as numbers, except beyond ±2^53 where JSON readers lose
precision (then strings); floats as numbers, with NaN and ±infinity as the
strings "NaN", "Infinity", "-Infinity"; dates as "YYYY-MM-DD"; datetimes as
ISO 8601 (``Z`` for zoned ones); binary as base64; null as null.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import math
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.compute as pc

from core.chunks import chunk_key, read_rows
from core.objects import Commit, Manifest, TableEntry, get_commit, get_manifest, get_schema
from core.schema import Column
from core.storage import get_store
from core.typed_values import decimal_text, duration_iso
from features.data import digests, query
from features.data.errors import TableNotFound, TableRequired, UnknownColumn
from features.data.filters import parse_filter, parse_filter_zones, parse_sort
from features.layouts import service as layouts_service
from features.refs import service as refs_service

__all__ = [
    "column_values",
    "json_value",
    "page",
    "parse_filter",
    "parse_filter_zones",
    "parse_sort",
    "tables",
]

MAX_LIMIT = 1000
_SAFE_INT = 2**53


def tables(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, ref: str, *, digest: bool = False
) -> dict[str, Any]:
    """A version's tables; each with its content digest when one is known,
    or (``digest``) computed now if not (``digests``)."""
    commit_id = refs_service.resolve(conn, dataset_id, ref)
    store = get_store()
    commit = get_commit(store, commit_id)
    items = []
    entries = sorted(commit.tables.items())
    known = {} if digest else digests.known(conn, [e.manifest for _, e in entries])
    for name, entry in entries:
        schema = get_schema(store, entry.schema)
        item: dict[str, Any] = {
            "name": name,
            "row_count": entry.row_count,
            "columns": [c.to_json() for c in schema.columns],
        }
        if digest:
            item["digest"] = digests.digest(conn, store, get_manifest(store, entry.manifest))
        elif entry.manifest in known:
            item["digest"] = known[entry.manifest]
        items.append(item)
    return {"commit_id": commit_id, "items": items}


def table_of(commit: Commit, table: str | None, ref: str) -> tuple[str, TableEntry]:
    """The named table of a version, or its only one when none is named."""
    if table is None:
        if len(commit.tables) != 1:
            listed = ", ".join(sorted(commit.tables)) or "none"
            raise TableRequired(f"name the table with ?table= (this version has tables: {listed})")
        table = next(iter(commit.tables))
    entry = commit.tables.get(table)
    if entry is None:
        raise TableNotFound(f"table {table!r} does not exist at {ref}")
    return table, entry


def page(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    ref: str,
    *,
    table: str | None,
    offset: int,
    limit: int,
    columns: list[str] | None,
    filter: str | None = None,
    sort: str | None = None,
) -> dict[str, Any]:
    commit_id = refs_service.resolve(conn, dataset_id, ref)
    store = get_store()
    table, entry = table_of(get_commit(store, commit_id), table, ref)
    schema = get_schema(store, entry.schema)
    names = schema.names
    if columns:
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise UnknownColumn(f"unknown columns: {', '.join(unknown)}", columns=unknown)
        picked = [names.index(c) for c in columns]
    else:
        picked = list(range(len(names)))
    filter = filter.strip() if filter else None
    sort = sort.strip() if sort else None
    where, zone = parse_filter_zones(filter, schema) if filter else (None, None)
    order = parse_sort(sort, schema) if sort else []
    manifest, object_key = source(conn, entry)
    wanted = tuple(names[i] for i in picked)
    kinds = [schema.columns[i].type for i in picked]
    rows: list[tuple[Any, ...]] = []
    total = entry.row_count
    if where is None and not order:
        for chunk, start, length in manifest.slices(offset, limit):
            part = read_rows(store, chunk, start, length, wanted, object_key)
            cols = [column_values(part.column(i), kinds[i]) for i in range(len(wanted))]
            rows.extend(zip(*cols, strict=True))
    else:
        found = query.positions(
            store,
            manifest,
            schema,
            where=where,
            order=order,
            key=(filter or "", sort or ""),
            object_key=object_key,
            zone=zone,
        )
        total = len(found)
        at = found[offset : offset + limit]
        if len(at) and wanted:
            part = query.read_positions(store, manifest, wanted, at, object_key)
            cols = [column_values(part.column(i), kinds[i]) for i in range(len(wanted))]
            rows.extend(zip(*cols, strict=True))
        elif len(at):
            rows = [() for _ in range(len(at))]
    body = {
        "commit_id": commit_id,
        "table": table,
        "columns": [_page_column(schema.columns[i]) for i in picked],
        "rows": rows,
        "offset": offset,
        "limit": limit,
        "total_rows": total,
    }
    if filter:
        body["filter"] = filter
    if sort:
        body["sort"] = [{"column": c, "descending": d} for c, d in order]
    return body


def source(
    conn: psycopg.Connection[Any], entry: TableEntry
) -> tuple[Manifest, Callable[[str], str]]:
    """Where a table version's rows are read from: its manifest's chunks, or,
    for a fragmented version that has one, its read copy (the rows in order,
    in parts: ``core.layouts``). Pages do not ask for copies."""
    store = get_store()
    manifest = get_manifest(store, entry.manifest)
    copy = layouts_service.for_reading(conn, store, manifest, entry.schema, ask=False)
    if copy is None:
        return manifest, chunk_key
    return copy.source()


def _page_column(c: Column) -> dict[str, Any]:
    """A page's column: its name and type (with a parameterised type's
    ``precision``/``scale``, ``item`` or ``fields``, as in schemas)."""
    out = c.to_json()
    del out["nullable"]
    return out


_PLAIN = {"integer", "float", "boolean", "string", "date", "datetime", "datetime_tz"}


def column_values(arr: pa.ChunkedArray, kind: str) -> list[Any]:
    """A column's values ready for orjson, which writes dates and datetimes as
    ISO 8601 itself; Python touches single values only where JSON needs help."""
    if kind == "integer" and len(arr) and arr.null_count < len(arr):
        big = pc.max(pc.abs(arr)).as_py()
        if big is not None and big > _SAFE_INT:
            return [json_value(v) for v in arr.to_pylist()]
    if kind == "float" and pc.any(pc.invert(pc.is_finite(arr))).as_py():
        return [json_value(v) for v in arr.to_pylist()]
    if kind == "binary" or kind not in _PLAIN:  # exact and nested types
        return [json_value(v) for v in arr.to_pylist()]
    return arr.to_pylist()  # type: ignore[no-any-return]


def json_value(v: Any) -> Any:
    """One value in its JSON form ("Values in JSON" in docs/api.md)."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v if -_SAFE_INT <= v <= _SAFE_INT else str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "NaN"
        if math.isinf(v):
            return "Infinity" if v > 0 else "-Infinity"
        return v
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            return v.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        return v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, dt.time):
        return v.isoformat()
    if isinstance(v, dt.timedelta):
        return duration_iso(v)
    if isinstance(v, decimal.Decimal):
        return decimal_text(v)
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    if isinstance(v, list):
        return [json_value(x) for x in v]
    if isinstance(v, dict):
        return {k: json_value(x) for k, x in v.items()}
    return str(v)

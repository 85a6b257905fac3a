"""Logical column types and their Arrow storage.

A schema is an ordered list of columns with a name, a logical type and
nullability. Logical types are what users see in the API; each has exactly
one Arrow storage type in chunks and one type tag in the row encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from core.errors import UnknownType

# logical type -> (Arrow storage type, row-encoding tag)
_TYPES: dict[str, tuple[pa.DataType, str]] = {
    "integer": (pa.int64(), "i"),
    "float": (pa.float64(), "f"),
    "boolean": (pa.bool_(), "b"),
    "string": (pa.large_string(), "s"),
    "binary": (pa.large_binary(), "x"),
    "date": (pa.date32(), "d"),
    "datetime": (pa.timestamp("us"), "t"),
    "datetime_tz": (pa.timestamp("us", tz="UTC"), "z"),
}
LOGICAL_TYPES = tuple(_TYPES)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    nullable: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "nullable": self.nullable}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Column:
        return cls(name=d["name"], type=d["type"], nullable=bool(d.get("nullable", True)))


def arrow_type(logical: str) -> pa.DataType:
    try:
        return _TYPES[logical][0]
    except KeyError:
        raise UnknownType(f"unknown column type {logical!r}") from None


def arrow_schema(columns: list[Column]) -> pa.Schema:
    return pa.schema([pa.field(c.name, arrow_type(c.type), nullable=c.nullable) for c in columns])


def arrow_for_hashing(arr: pa.Array, logical: str) -> tuple[pa.Array, int]:
    """The array in its storage type and the tag the row encoding uses."""
    storage, tag = _TYPES[logical]
    if arr.type != storage:
        arr = pc.cast(arr, storage)
    return arr, ord(tag)

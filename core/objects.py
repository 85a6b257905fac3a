"""Schema, manifest and commit objects: canonical forms, ids, storage.

All three are immutable and content addressed (see ``core.hashing``). They
are stored as their canonical JSON under ``<kind>s/<id>`` and cached after
the first read, since an id always names the same content.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from core.hashing import canonical_json, json_object_id
from core.lru import LRU
from core.schema import Column
from core.storage import ObjectStore


@dataclass(frozen=True, slots=True)
class Schema:
    columns: tuple[Column, ...]

    def to_json(self) -> dict[str, Any]:
        return {"columns": [c.to_json() for c in self.columns]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Schema:
        return cls(columns=tuple(Column.from_json(c) for c in d["columns"]))

    @property
    def id(self) -> str:
        return json_object_id("schema", self.to_json())

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


@dataclass(frozen=True, slots=True)
class Piece:
    chunk: str
    start: int
    length: int


@dataclass(frozen=True)
class Manifest:
    """A table's rows in order as a piece table of ``(chunk, start, length)``."""

    pieces: tuple[Piece, ...]

    def to_json(self) -> dict[str, Any]:
        return {"pieces": [[p.chunk, p.start, p.length] for p in self.pieces]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Manifest:
        return cls(pieces=tuple(Piece(c, s, n) for c, s, n in d["pieces"]))

    @cached_property
    def id(self) -> str:
        return json_object_id("manifest", self.to_json())

    @cached_property
    def starts(self) -> list[int]:
        """Cumulative row offset where each piece starts."""
        out, total = [], 0
        for p in self.pieces:
            out.append(total)
            total += p.length
        return out

    @property
    def row_count(self) -> int:
        return sum(p.length for p in self.pieces)

    def slices(self, offset: int, limit: int) -> list[tuple[str, int, int]]:
        """The ``(chunk, start_in_chunk, length)`` runs covering rows [offset, offset+limit)."""
        out: list[tuple[str, int, int]] = []
        if limit <= 0 or not self.pieces:
            return out
        i = max(bisect.bisect_right(self.starts, offset) - 1, 0)
        end = offset + limit
        while i < len(self.pieces) and self.starts[i] < end:
            p, s = self.pieces[i], self.starts[i]
            lo, hi = max(offset, s), min(end, s + p.length)
            if hi > lo:
                out.append((p.chunk, p.start + (lo - s), hi - lo))
            i += 1
        return out


@dataclass(frozen=True, slots=True)
class TableEntry:
    schema: str
    manifest: str
    row_count: int

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "manifest": self.manifest, "row_count": self.row_count}


@dataclass(frozen=True)
class Commit:
    parents: tuple[str, ...]
    tables: dict[str, TableEntry]
    author: str
    created_at: str  # ISO 8601, UTC, microseconds
    message: str
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "parents": list(self.parents),
            "tables": {name: t.to_json() for name, t in sorted(self.tables.items())},
            "author": self.author,
            "created_at": self.created_at,
            "message": self.message,
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Commit:
        return cls(
            parents=tuple(d["parents"]),
            tables={n: TableEntry(**t) for n, t in d["tables"].items()},
            author=d["author"],
            created_at=d["created_at"],
            message=d["message"],
            provenance=d.get("provenance", {}),
        )

    @cached_property
    def id(self) -> str:
        return json_object_id("commit", self.to_json())


_cache: LRU[str, Any] = LRU(max_items=4096)


def _key(kind: str, oid: str) -> str:
    return f"{kind}s/{oid}"


def put_object(store: ObjectStore, kind: str, obj: Schema | Manifest | Commit) -> str:
    oid = obj.id
    key = _key(kind, oid)
    if not store.exists(key):
        store.put(key, canonical_json(obj.to_json()))
    _cache.put(key, obj)
    return oid


def _load(store: ObjectStore, kind: str, oid: str, cls: Any) -> Any:
    key = _key(kind, oid)
    obj = _cache.get(key)
    if obj is None:
        obj = cls.from_json(json.loads(store.get(key)))
        _cache.put(key, obj)
    return obj


def get_schema(store: ObjectStore, oid: str) -> Schema:
    return _load(store, "schema", oid, Schema)  # type: ignore[no-any-return]


def get_manifest(store: ObjectStore, oid: str) -> Manifest:
    return _load(store, "manifest", oid, Manifest)  # type: ignore[no-any-return]


def get_commit(store: ObjectStore, oid: str) -> Commit:
    return _load(store, "commit", oid, Commit)  # type: ignore[no-any-return]

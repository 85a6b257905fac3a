"""Schema, manifest and commit objects: canonical forms, ids, storage.

All three are immutable and content addressed (see ``core.hashing``). They
are stored as their canonical JSON under ``<kind>s/<id>`` and cached after
the first read, since an id always names the same content.

Large objects (over ``COMPRESS_OVER`` bytes of canonical JSON) are stored in
a compact form; the id is still that of the canonical JSON, and a reader tells
the forms apart by their first bytes (canonical JSON starts with ``{``):

- a manifest: ``DSAM\x01`` + zstd of its distinct chunk ids (32 bytes each)
  and three little-endian int64 columns per piece: the chunk's index, the
  gap from the end of the previous piece of that chunk to its start, and its
  length. Versions of a table edited at random positions are made of many
  short pieces (~35,000 for 1 % of 1M rows edited, ~300,000 after ten such
  versions); a piece costs ~80 bytes of JSON, ~4 bytes zstd-compressed and
  ~1.2 bytes in this form (measured on the 300,000-piece manifest);
- anything else: the zstd-compressed canonical JSON.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, NamedTuple, overload

import numpy as np
import orjson
import zstandard

from core import _pieces, failpoints
from core.hashing import canonical_json, json_object_id, object_id
from core.lru import LRU
from core.schema import Column
from core.storage import ObjectStore, needs_write


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


class Piece(NamedTuple):
    """Rows ``[start, start + length)`` of a chunk. A named tuple: versions made
    of hundreds of thousands of pieces build them ~4x faster than a dataclass."""

    chunk: str
    start: int
    length: int


@dataclass(frozen=True)
class PieceColumns:
    """A manifest's pieces column by column: ``chunk`` numbers index ``chunks``;
    ``pos`` is the table position where each piece starts."""

    chunks: list[str]
    chunk: np.ndarray
    start: np.ndarray
    length: np.ndarray
    pos: np.ndarray

    @cached_property
    def by_chunk(self) -> np.ndarray:
        """Piece indices grouped by chunk number, each chunk's in table order."""
        return by_chunk(self.chunk, len(self.chunks))


@dataclass(frozen=True)
class Manifest:
    """A table's rows in order as a piece table of ``(chunk, start, length)``."""

    pieces: tuple[Piece, ...]

    def to_json(self) -> dict[str, Any]:
        return {"pieces": [[p.chunk, p.start, p.length] for p in self.pieces]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Manifest:
        return cls(pieces=tuple(Piece(c, s, n) for c, s, n in d["pieces"]))

    @classmethod
    def of(cls, pieces: Sequence[Piece]) -> Manifest:
        """A manifest of ``pieces``: kept as they are when they are columns
        already (``from_columns``), else as a tuple."""
        if isinstance(pieces, _LazyPieces):
            return cls._with_columns(pieces._cols)  # noqa: SLF001
        return cls(tuple(pieces))

    @classmethod
    def from_columns(
        cls, ids: list[str], chunk: np.ndarray, start: np.ndarray, length: np.ndarray
    ) -> Manifest:
        """A manifest from piece columns (``chunk`` indexes ``ids``), its
        ``Piece`` objects made only if asked for: a fragmented version has
        hundreds of thousands. The chunks are renumbered in first-use order,
        as ``columns`` numbers them."""
        chunk = np.asarray(chunk, dtype=np.int64)
        names: list[str] = []
        if len(chunk):
            used, first = np.unique(chunk, return_index=True)
            order = used[np.argsort(first, kind="stable")]
            remap = np.zeros(int(used[-1]) + 1, dtype=np.int64)
            remap[order] = np.arange(len(order))
            chunk = remap[chunk]
            names = [ids[i] for i in order.tolist()]
        start = np.asarray(start, dtype=np.int64)
        length = np.asarray(length, dtype=np.int64)
        return cls._with_columns(
            PieceColumns(names, chunk, start, length, np.cumsum(length) - length)
        )

    @classmethod
    def _with_columns(cls, cols: PieceColumns) -> Manifest:
        m = cls(_LazyPieces(cols))  # type: ignore[arg-type]
        m.__dict__["columns"] = cols
        return m

    @cached_property
    def canonical(self) -> bytes:
        """The canonical JSON. orjson writes the same bytes as ``canonical_json``
        for this document (one key, integers, hex strings) ~10x faster, and a
        polars string format of the columns faster still for large manifests
        (same bytes: tests/core/test_objects.py); other chunk ids take the
        reference encoder."""
        if len(self.pieces) > _VECTOR_JSON_OVER:
            cols = self.columns
            if all(_HEX64.fullmatch(c) for c in cols.chunks):
                return _pieces_json(cols)
        doc = self.to_json()
        if all(_HEX64.fullmatch(c) for c in {p.chunk for p in self.pieces}):
            return orjson.dumps(doc)
        return canonical_json(doc)

    @cached_property
    def id(self) -> str:
        return object_id("manifest", self.canonical)

    @cached_property
    def starts(self) -> list[int]:
        """Cumulative row offset where each piece starts."""
        return self.columns.pos.tolist()  # type: ignore[no-any-return]

    @cached_property
    def columns(self) -> PieceColumns:
        """The pieces as arrays, for vectorised work (compare, merge)."""
        names: dict[str, int] = {}
        n = len(self.pieces)
        chunk = np.fromiter(
            (names.setdefault(p.chunk, len(names)) for p in self.pieces), np.int64, n
        )
        start = np.fromiter((p.start for p in self.pieces), np.int64, n)
        length = np.fromiter((p.length for p in self.pieces), np.int64, n)
        return PieceColumns(list(names), chunk, start, length, np.cumsum(length) - length)

    @cached_property
    def row_count(self) -> int:
        return int(self.columns.length.sum())

    def slices(self, offset: int, limit: int) -> list[tuple[str, int, int]]:
        """The ``(chunk, start_in_chunk, length)`` runs covering rows [offset, offset+limit)."""
        out: list[tuple[str, int, int]] = []
        cols = self.columns
        n = len(cols.pos)
        if limit <= 0 or n == 0:
            return out
        i = max(int(np.searchsorted(cols.pos, offset, side="right")) - 1, 0)
        end = offset + limit
        while i < n and cols.pos[i] < end:
            s, length = int(cols.pos[i]), int(cols.length[i])
            lo, hi = max(offset, s), min(end, s + length)
            if hi > lo:
                out.append((cols.chunks[cols.chunk[i]], int(cols.start[i]) + (lo - s), hi - lo))
            i += 1
        return out


class _LazyPieces(Sequence[Piece]):
    """A decoded manifest's pieces, made into ``Piece`` objects only when
    asked for: compare and paging work on the columns, and building 40,000
    objects costs more than the rest of a compare."""

    __slots__ = ("_cols",)

    def __init__(self, cols: PieceColumns) -> None:
        self._cols = cols

    def __len__(self) -> int:
        return len(self._cols.chunk)

    @overload
    def __getitem__(self, i: int) -> Piece: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[Piece, ...]: ...

    def __getitem__(self, i: int | slice) -> Piece | tuple[Piece, ...]:
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(len(self))))
        c = self._cols
        return Piece(c.chunks[c.chunk[i]], int(c.start[i]), int(c.length[i]))

    def __iter__(self) -> Iterator[Piece]:
        c = self._cols
        names = [c.chunks[k] for k in c.chunk.tolist()]
        return map(Piece, names, c.start.tolist(), c.length.tolist())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (tuple, _LazyPieces)):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))


@dataclass(frozen=True, slots=True)
class TableEntry:
    schema: str
    manifest: str
    row_count: int

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "manifest": self.manifest, "row_count": self.row_count}


def commit_time(ts: datetime) -> str:
    """A commit's canonical time (part of its id): UTC with microseconds and
    a 'Z'; a naive time is taken as UTC."""
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Commit:
    parents: tuple[str, ...]
    tables: dict[str, TableEntry]
    author: str
    created_at: str  # commit_time(): ISO 8601, UTC, microseconds
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


def _size(obj: Any) -> int:
    """About what a cached object holds: a manifest its piece columns (and
    its Piece objects, when it has them), anything else ~1 KB."""
    if not isinstance(obj, Manifest):
        return 1024
    size = 0 if isinstance(obj.pieces, _LazyPieces) else 120 * len(obj.pieces)
    cols = obj.__dict__.get("columns")
    if cols is not None:
        size += sum(a.nbytes for a in (cols.chunk, cols.start, cols.length, cols.pos))
        order = cols.__dict__.get("by_chunk")
        size += 0 if order is None else order.nbytes
    return size


# decoded objects by key: bounded in bytes too, since a manifest of a
# fragmented 35M-row version is ~70 MB decoded (one bigger than the budget
# is decoded again on each use: each is a whole read, seconds long)
_cache: LRU[str, Any] = LRU(max_items=4096, max_bytes=192 * 1024**2, size_of=_size)
COMPRESS_OVER = 64 * 1024
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_MANIFEST_MAGIC = b"DSAM\x01"  # the compact form, and its first version
_MANIFEST_V2 = b"DSAM\x02"
_HEX64 = re.compile(r"[0-9a-f]{64}")


_VECTOR_JSON_OVER = 4096


def _pieces_json(cols: PieceColumns) -> bytes:
    """``{"pieces":[["<chunk>",start,length],...]}`` from the columns, as
    orjson writes it, without a Python object per piece."""
    import polars as pl  # only imports and compares build large manifests

    ids = pl.Series("id", cols.chunks, dtype=pl.Utf8).gather(pl.Series(cols.chunk))
    text = pl.DataFrame({"id": ids, "s": cols.start, "n": cols.length}).select(
        pl.format('["{}",{},{}]', "id", "s", "n").str.join(",")
    )
    return b'{"pieces":[' + text.item().encode() + b"]}"


def _narrow(a: np.ndarray) -> np.ndarray:
    """``a`` in the narrowest of int16, int32 and int64 that holds it."""
    for t in ("<i2", "<i4"):
        info = np.iinfo(t)
        if not len(a) or (int(a.min()) >= info.min and int(a.max()) <= info.max):
            return a.astype(t)
    return a.astype("<i8")


def _encode_manifest(m: Manifest) -> bytes | None:
    """The compact stored form of a large manifest (None: chunk ids not all
    hex): ``DSAM\\x02`` and zstd of the chunk ids, then per piece its chunk
    number, gap (rows skipped since the previous piece of its chunk ended)
    and length, a column each, each as narrow as it can be (decision 0016).
    ``DSAM\\x01``, which older versions wrote, is the same with every column
    8 bytes wide and no widths."""
    c = m.columns
    if not all(_HEX64.fullmatch(x) for x in c.chunks):
        return None
    n = len(c.chunk)
    # the gap: from where the previous piece of the same chunk ended (0 at first)
    order = by_chunk(c.chunk, len(c.chunks))
    ends = (c.start + c.length)[order]
    prev = np.zeros(n, dtype=np.int64)
    if n:
        prev[1:] = ends[:-1]
        sorted_chunk = c.chunk[order]
        prev[np.r_[True, sorted_chunk[1:] != sorted_chunk[:-1]]] = 0
    gap = np.empty(n, dtype=np.int64)
    gap[order] = c.start[order] - prev
    cols = [_narrow(a) for a in (c.chunk, gap, c.length)]
    body = (
        len(c.chunks).to_bytes(8, "little")
        + b"".join(bytes.fromhex(x) for x in c.chunks)
        + n.to_bytes(8, "little")
        + bytes(a.dtype.itemsize for a in cols)
        + b"".join(a.tobytes() for a in cols)
    )
    return _MANIFEST_V2 + zstandard.ZstdCompressor(level=9).compress(body)


def _decode_manifest(raw: bytes) -> Manifest:
    """A manifest from its compact form, in one pass (core/_pieces.c). A
    damaged one (an unknown form, counts its bytes cannot hold, a chunk
    number or a start out of range, bytes left over) is a ValueError."""
    version = raw[len(_MANIFEST_MAGIC) - 1 : len(_MANIFEST_MAGIC)]
    if version not in (_MANIFEST_MAGIC[-1:], _MANIFEST_V2[-1:]):
        raise ValueError("damaged manifest: unknown compact form")
    body = zstandard.ZstdDecompressor().decompress(raw[len(_MANIFEST_MAGIC) :])
    k = int.from_bytes(body[:8], "little")
    at = 8 + 32 * k
    if len(body) < at + 8:
        raise ValueError("damaged manifest: chunk ids do not fit")
    chunks = [body[8 + 32 * i : 40 + 32 * i].hex() for i in range(k)]
    n = int.from_bytes(body[at : at + 8], "little")
    at += 8
    widths = b"\x08\x08\x08"
    if version == _MANIFEST_V2[-1:]:
        widths, at = body[at : at + 3], at + 3
    if len(widths) != 3 or len(body) - at != n * sum(widths):
        raise ValueError("damaged manifest: pieces do not fit")
    chunk, start, length, pos, order = (np.empty(n, dtype=np.int64) for _ in range(5))
    _pieces.decode(body, at, n, k, widths, chunk, start, length, pos, order)
    for a in (chunk, start, length, pos, order):
        a.flags.writeable = False  # a cached manifest is shared, never changed
    cols = PieceColumns(chunks, chunk, start, length, pos)
    cols.__dict__["by_chunk"] = order
    m = Manifest(_LazyPieces(cols))  # type: ignore[arg-type]
    m.__dict__["columns"] = cols
    return m


def by_chunk(chunk: np.ndarray, chunks: int) -> np.ndarray:
    """Piece indices ordered by chunk number, stably (each chunk's pieces stay
    in table order): NumPy's radix sort on 16-bit keys, linear time, where
    the chunk numbers fit (a 300,000-piece manifest: ~2 ms against ~12)."""
    if chunks <= 2**16:
        return np.argsort(chunk.astype(np.uint16), kind="stable")
    return np.argsort(chunk, kind="stable")


def _key(kind: str, oid: str) -> str:
    return f"{kind}s/{oid}"


def put_object(store: ObjectStore, kind: str, obj: Schema | Manifest | Commit) -> str:
    data = obj.canonical if isinstance(obj, Manifest) else canonical_json(obj.to_json())
    oid = object_id(kind, data)
    key = _key(kind, oid)
    if needs_write(store, key):
        if len(data) > COMPRESS_OVER:
            compact = _encode_manifest(obj) if isinstance(obj, Manifest) else None
            data = compact or zstandard.ZstdCompressor(level=3).compress(data)
        store.put(key, data)
        if kind == "manifest":
            failpoints.hit("manifest_written")
    _cache.put(key, obj)
    return oid


def _decode(raw: bytes) -> Any:
    if raw[:4] == _ZSTD_MAGIC:
        raw = zstandard.ZstdDecompressor().decompress(raw)
    return json.loads(raw)


def decode_object(raw: bytes, cls: Any) -> Any:
    """A stored schema, manifest or commit from its bytes (compressed or not)."""
    if raw[:4] == _MANIFEST_MAGIC[:4] and cls is Manifest:
        return _decode_manifest(raw)
    return cls.from_json(_decode(raw))


def _load(store: ObjectStore, kind: str, oid: str, cls: Any) -> Any:
    key = _key(kind, oid)
    obj = _cache.get(key)
    if obj is None:
        obj = decode_object(store.get(key), cls)
        if cls is not Schema:
            # stored under its id, written once: no need to re-encode the
            # object to know it (for a manifest of 40,000 pieces, ~30 ms)
            obj.__dict__["id"] = oid
        _cache.put(key, obj)
    return obj


def get_schema(store: ObjectStore, oid: str) -> Schema:
    return _load(store, "schema", oid, Schema)  # type: ignore[no-any-return]


def get_manifest(store: ObjectStore, oid: str) -> Manifest:
    return _load(store, "manifest", oid, Manifest)  # type: ignore[no-any-return]


def get_commit(store: ObjectStore, oid: str) -> Commit:
    return _load(store, "commit", oid, Commit)  # type: ignore[no-any-return]

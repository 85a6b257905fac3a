"""Checks of stored objects against their addresses (``dsa fsck``, issue 14).

Every object is read afresh from the store, bypassing the process's caches
of decoded objects, footers and row groups: a check must see what is
stored, not what was read before. Each check returns a problem's detail,
or None when the object is whole.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from core.chunks import ROW_HASH_COLUMN, chunk_key
from core.errors import ObjectNotFound
from core.hashing import ROW_HASH_BYTES, chunk_id, object_id, row_hashes
from core.objects import Commit, Manifest, Schema, decode_object
from core.schema import Column
from core.storage import ObjectStore

KINDS = {"schema": Schema, "manifest": Manifest, "commit": Commit}


@dataclass(frozen=True)
class Checked:
    """An object as found: its decoded form (None when missing or damaged),
    how many bytes were read, and what is wrong with it."""

    value: Schema | Manifest | Commit | None
    bytes_read: int
    problem: str | None


def check_object(store: ObjectStore, kind: str, oid: str) -> Checked:
    """A schema, manifest or commit: present, decodable, and its content
    hashing to ``oid``."""
    key = f"{kind}s/{oid}"
    try:
        raw = store.get(key)
    except ObjectNotFound:
        return Checked(None, 0, "missing")
    try:
        obj = decode_object(raw, KINDS[kind])
    except Exception as exc:  # any damage that stops decoding
        return Checked(None, len(raw), f"cannot be decoded ({type(exc).__name__})")
    payload = obj.canonical if isinstance(obj, Manifest) else _canonical(obj)
    got = object_id(kind, payload)
    if got != oid:
        return Checked(None, len(raw), f"content hashes to {got}, not to its address")
    return Checked(obj, len(raw), None)


def _canonical(obj: Schema | Commit) -> bytes:
    from core.hashing import canonical_json

    return canonical_json(obj.to_json())


@dataclass(frozen=True)
class ChunkCheck:
    rows: int  # -1 when unreadable
    bytes_read: int
    problem: str | None


def check_chunk(store: ObjectStore, cid: str, columns: list[Column] | None) -> ChunkCheck:
    """A chunk: present, a readable Parquet file whose ``_row_hash`` column
    hashes to ``cid``; with ``columns`` (deep), every row re-hashed equals
    its stored hash. Reads one row group at a time: memory stays bounded."""
    key = chunk_key(cid)
    try:
        file = store.open_arrow(key)
    except ObjectNotFound:
        return ChunkCheck(-1, 0, "missing")
    try:
        with file:
            pf = pq.ParquetFile(file, pre_buffer=False)
            size = pf.metadata.serialized_size
            hashes = bytearray()
            names = [c.name for c in columns] if columns else []
            for i in range(pf.metadata.num_row_groups):
                group = pf.read_row_group(i, columns=[*names, ROW_HASH_COLUMN])
                size += _stored_bytes(pf.metadata.row_group(i), [*names, ROW_HASH_COLUMN])
                stored = _hash_bytes(group.column(ROW_HASH_COLUMN))
                hashes += stored
                if columns and row_hashes(group.select(names), columns) != stored:
                    return ChunkCheck(
                        pf.metadata.num_rows,
                        size,
                        f"rows of row group {i} do not match their hashes",
                    )
    except ObjectNotFound:
        return ChunkCheck(-1, 0, "missing")
    except (OSError, pa.ArrowException) as exc:
        return ChunkCheck(-1, 0, f"not a readable chunk ({type(exc).__name__}: {exc})"[:300])
    got = chunk_id(bytes(hashes))
    if got != cid:
        return ChunkCheck(
            len(hashes) // ROW_HASH_BYTES, size, f"row hashes give {got}, not its address"
        )
    return ChunkCheck(len(hashes) // ROW_HASH_BYTES, size, None)


def _hash_bytes(col: pa.ChunkedArray) -> bytes:
    arr = col.combine_chunks()
    buf = arr.buffers()[1]
    assert buf is not None
    return buf.to_pybytes()[arr.offset * ROW_HASH_BYTES : (arr.offset + len(arr)) * ROW_HASH_BYTES]


def _stored_bytes(group: pq.RowGroupMetaData, names: list[str]) -> int:
    """What reading these columns of a row group reads of the file (compressed)."""
    wanted = set(names)
    return sum(
        group.column(j).total_compressed_size
        for j in range(group.num_columns)
        if group.column(j).path_in_schema in wanted
    )

"""Content addressing: the hash function and the canonical encodings.

Why BLAKE3: it is fast (several GB/s in one core), has one fixed
specification with no parameters to get wrong, no length-extension
weakness, and an extendable output, so a 16-byte row hash and a 32-byte
object id come from the same function.

- Row hash: the first 16 bytes of BLAKE3 of the row's canonical encoding
  (``dsa.row.v1``; byte by byte in docs/hash-spec.md). Computed in one C call
  per batch by ``core._rowhash.hash_rows`` over the Arrow buffers, so no
  Python runs per row.
- Object ids: the full 32-byte BLAKE3, as 64 lowercase hex characters, of a
  canonical form that starts with a version tag:
  ``chunk``    -> b"dsa.chunk.v1\\0" + the chunk's row hashes in order
  ``manifest`` / ``schema`` / ``commit`` -> b"dsa.<kind>.v1\\0" + canonical JSON
  (UTF-8, keys sorted, separators ``,`` and ``:``, no ASCII escaping).

Golden vectors in tests/core/test_hashing.py pin all of this: a change of
encoding needs a new version tag, never an edit of v1.
"""

from __future__ import annotations

import json
from typing import Any

import blake3
import pyarrow as pa

import core._rowhash as _rowhash
from core.errors import BadValue
from core.schema import Column, arrow_for_hashing, parse_type
from core.typed_values import value_bytes

ROW_HASH_BYTES = 16
_ENCODED = {ord("n"), ord("l"), ord("r")}  # decimal, list, struct: value bytes built here
_VARLEN = {ord("s"), ord("x"), *_ENCODED}


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def object_id(kind: str, payload: bytes) -> str:
    return blake3.blake3(f"dsa.{kind}.v1\0".encode() + payload).hexdigest()


def json_object_id(kind: str, obj: Any) -> str:
    return object_id(kind, canonical_json(obj))


def chunk_id(row_hashes: bytes) -> str:
    return object_id("chunk", row_hashes)


def row_hashes(batch: pa.RecordBatch | pa.Table, columns: list[Column]) -> bytes:
    """16-byte row hashes of every row, concatenated (``len == 16 * num_rows``).

    ``batch`` holds the columns in the order of ``columns`` and with their
    storage types (see ``core.schema.arrow_type``). A table is hashed batch by
    batch, so its columns are never copied into one contiguous array.
    """
    if isinstance(batch, pa.Table):
        return b"".join(_hash_batch(b, columns) for b in batch.to_batches())
    return _hash_batch(batch, columns)


def _hash_batch(batch: pa.RecordBatch | pa.Table, columns: list[Column]) -> bytes:
    n = batch.num_rows
    specs = []
    for i, col in enumerate(columns):
        arr = batch.column(i)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
        arr, tag = arrow_for_hashing(arr, col.type)
        if tag in _ENCODED:
            try:
                arr = value_bytes(arr, parse_type(col.type))
            except (OverflowError, ValueError) as exc:  # a nested date past year 9999 …
                raise BadValue(
                    f"column {col.name!r} holds a value out of range: {exc}", column=col.name
                ) from None
        bufs = arr.buffers()
        validity = bufs[0] if arr.null_count else None
        if tag in _VARLEN:
            specs.append((col.name.encode(), tag, validity, bufs[2] or b"", bufs[1], arr.offset))
        else:
            specs.append((col.name.encode(), tag, validity, bufs[1] or b"", None, arr.offset))
    return bytes(_rowhash.hash_rows(n, specs, ROW_HASH_BYTES))

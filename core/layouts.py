"""Read copies: a fragmented table version's rows stored once more, in order,
so that reading it whole costs what reading a freshly imported table costs.

A version made by re-uploads, merges or upserts is a manifest of many short
pieces. ``core.scan`` reads it chunk by chunk with each row group decoded
once, but still decodes the rows its pieces skip and gathers the rest
(measured on the 1M-row bench table after ten re-uploads: ~2× the CPU of
reading the same rows freshly imported). A **read copy** is those rows in
one Parquet object, ``layouts/<manifest id>``, written exactly like a chunk
(the table's columns and ``_row_hash``, zstd, row groups of
``DSA_ROW_GROUP_ROWS``): read through a one-piece manifest
(``source``), it is a fresh import's layout.

A read copy is a cache, never a version: commit and manifest ids do not
change, nothing references it, and deleting it (or all of ``layouts/``) at
any time only makes reads slower. It names the manifest it copies and the
digest of the manifest's row hashes in order (``rows_digest``: the id a
chunk of exactly those rows would have) in its Parquet metadata; ``verify``
checks both against the manifest and the copy's own ``_row_hash`` column
before it is used, so a stale or damaged copy is never read.

When copies are made and dropped (a byte budget, least recently used
first) is the ``layouts`` feature's policy; docs/decisions/0016.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import blake3
import numpy as np
import pyarrow as pa

from core.chunks import (
    ROW_HASH_COLUMN,
    chunk_schema,
    forget_footer,
    parquet_writer,
    row_group_starts,
)
from core.config import get_settings
from core.lru import LRU
from core.objects import Manifest, Schema
from core.scan import Scan
from core.storage import ObjectStore

LAYOUT_VERSION = "dsa.layout.v1"
FRAGMENTED_MIN_PIECES = 64
FRAGMENTED_RUN_ROWS = 4_096  # pieces shorter than this on average: fragmented


def layout_key(manifest_id: str) -> str:
    return f"layouts/{manifest_id}"


def fragmented(manifest: Manifest) -> bool:
    """Whether reading ``manifest`` whole is notably slower than reading its
    rows as a fresh import stores them: many pieces, averaging fewer than two
    row groups' worth of rows (a window then gathers dozens of pieces)."""
    pieces = len(manifest.columns.length)
    return pieces >= FRAGMENTED_MIN_PIECES and manifest.row_count < pieces * FRAGMENTED_RUN_ROWS


def source(manifest_id: str, rows: int) -> tuple[Manifest, Callable[[str], str]]:
    """The read copy of manifest ``manifest_id`` as a manifest of one piece
    and the key its one "chunk" is read from (``Scan``'s ``key``)."""
    one = Manifest.from_columns([manifest_id], np.zeros(1), np.zeros(1), np.array([rows]))
    return one, layout_key


def _digest() -> blake3.blake3:
    return blake3.blake3(b"dsa.chunk.v1\0")  # as core.hashing.chunk_id hashes row hashes


def _update(digest: blake3.blake3, hashes: pa.ChunkedArray) -> None:
    """Feed a ``_row_hash`` column's bytes (16 a row) to ``digest``, uncopied."""
    for arr in hashes.chunks:
        digest.update(arr.buffers()[1].slice(arr.offset * 16, len(arr) * 16))


def _hash_windows(scan: Scan, digest: blake3.blake3) -> None:
    for t in scan:
        _update(digest, t.column(ROW_HASH_COLUMN))


def rows_digest(store: ObjectStore, manifest: Manifest) -> str:
    """BLAKE3 of the manifest's row hashes in table order, as a chunk id:
    read window by window (bounded memory), ~30 ms per 1M rows."""
    digest = _digest()
    _hash_windows(Scan(store, manifest, [ROW_HASH_COLUMN]), digest)
    return str(digest.hexdigest())


def write(store: ObjectStore, manifest: Manifest, schema: Schema, *, tmp_dir: Path) -> int:
    """Write the read copy of ``manifest`` (a table of ``schema``); its size in
    bytes. The rows are read window by window (``core.scan``) and written in
    row groups of ``DSA_ROW_GROUP_ROWS``; the copy's row hashes are checked
    against the manifest's as they go, and only a whole copy is stored."""
    want = rows_digest(store, manifest)
    wrote = _digest()
    stored = chunk_schema(list(schema.columns))
    # chunks written at different times may disagree on a column's nullability
    nullable = pa.schema(
        [f if f.name == ROW_HASH_COLUMN else f.with_nullable(True) for f in stored]
    )
    meta = {
        b"dsa.layout": LAYOUT_VERSION.encode(),
        b"dsa.manifest": manifest.id.encode(),
        b"dsa.rows": str(manifest.row_count).encode(),
        b"dsa.rows_digest": want.encode(),
    }
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"layout-{uuid.uuid4().hex}.parquet"
    group_rows = get_settings().row_group_rows
    try:
        with parquet_writer(tmp, nullable.with_metadata(meta)) as writer:
            scan = Scan(store, manifest, nullable.names, schema=nullable)
            for t in scan:
                _update(wrote, t.column(ROW_HASH_COLUMN))
                writer.write_table(t, row_group_size=group_rows)
        if wrote.hexdigest() != want:
            raise RuntimeError(f"read copy of manifest {manifest.id} does not match its rows")
        size = tmp.stat().st_size
        store.put_file(layout_key(manifest.id), tmp, move=True)
        return size
    finally:
        tmp.unlink(missing_ok=True)


_verified: LRU[str, bool] = LRU(max_items=4096)


def verify(store: ObjectStore, manifest: Manifest) -> bool:
    """Whether the stored read copy of ``manifest`` holds exactly its rows:
    its metadata names the manifest, its row count and the digest of the
    manifest's row hashes, and its own ``_row_hash`` column has that digest.
    Checked once per process (then remembered; only its presence again after
    that); a missing copy is False."""
    key = layout_key(manifest.id)
    if not store.exists(key):  # deleted by hand: the cache may be emptied at any time
        forget(manifest.id)
        return False
    if _verified.get(manifest.id):
        return True
    forget_footer(key)  # read what is stored now
    starts, meta = row_group_starts(store, key)
    kv = meta.metadata or {}
    rows = int(starts[-1])
    ok = (
        kv.get(b"dsa.layout") == LAYOUT_VERSION.encode()
        and kv.get(b"dsa.manifest") == manifest.id.encode()
        and kv.get(b"dsa.rows") == str(manifest.row_count).encode()
        and rows == manifest.row_count
    )
    if ok:
        want = rows_digest(store, manifest)
        one, key_of = source(manifest.id, rows)
        got = _digest()
        _hash_windows(Scan(store, one, [ROW_HASH_COLUMN], key=key_of), got)
        ok = kv.get(b"dsa.rows_digest") == want.encode() and got.hexdigest() == want
    if ok:
        _verified.put(manifest.id, True)
    return ok


def forget(manifest_id: str) -> None:
    """Drop what this process remembers of a read copy (it was deleted)."""
    _verified.pop(manifest_id)
    forget_footer(layout_key(manifest_id))

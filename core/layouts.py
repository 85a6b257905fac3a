"""Read copies: a fragmented table version's rows stored once more, in order,
so that reading it whole costs what reading a freshly imported table costs.

A version made by re-uploads, merges or upserts is a manifest of many short
pieces. ``core.scan`` reads it chunk by chunk with each row group decoded
once, but still decodes the rows its pieces skip and gathers the rest
(measured on the 1M-row bench table after ten re-uploads: ~2× the CPU of
reading the same rows freshly imported). A **read copy** is those rows as a
fresh import stores them: parts of ``DSA_CHUNK_ROWS`` rows, each a Parquet
object written like a chunk (the table's columns and ``_row_hash``, zstd,
row groups of ``DSA_ROW_GROUP_ROWS``), under ``layouts/<manifest id>-<build
id>/<n>``; read through a manifest of one piece a part (``Copy.source``).

A read copy is a cache, never a version: commit and manifest ids do not
change, nothing references it, and deleting it (or all of ``layouts/``) at
any time only makes reads slower. Each build has its own key, so a process
that read an earlier build never mixes it up with a later one. The digest of
the copy's row hashes in order (the id a chunk of exactly those rows would
have) is computed while it is written and recorded with it (the ``layout``
row). Before a process first reads a copy, ``verify`` checks that every part
is there and readable and names its manifest and place, and that the rows
add up (the parts' footers, as a read trusts a chunk's content); whether
the rows digest to the recorded digest is ``verify_rows`` (fsck's check).

When copies are made and dropped (a byte budget, least recently read first)
is the ``layouts`` feature's policy; docs/decisions/0016.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import blake3
import numpy as np
import pyarrow as pa

from core.chunks import (
    ROW_HASH_COLUMN,
    chunk_key,
    chunk_schema,
    footer,
    forget,
    opened,
    parquet_writer,
    row_group_starts,
)
from core.config import get_settings
from core.errors import StoredObjectError
from core.lru import LRU
from core.objects import Manifest, Schema
from core.scan import Rebatch, Scan
from core.storage import ObjectStore

LAYOUT_VERSION = "dsa.layout.v1"
FRAGMENTED_MIN_PIECES = 64
FRAGMENTED_RUN_ROWS = 4_096  # pieces shorter than this on average: fragmented


def fragmented(manifest: Manifest) -> bool:
    """Whether reading ``manifest`` whole is notably slower than reading its
    rows as a fresh import stores them: many pieces, averaging fewer than two
    row groups' worth of rows (a window then gathers dozens of pieces)."""
    pieces = len(manifest.columns.length)
    return pieces >= FRAGMENTED_MIN_PIECES and manifest.row_count < pieces * FRAGMENTED_RUN_ROWS


@dataclass(frozen=True)
class Copy:
    """A stored read copy of manifest ``manifest_id``: ``rows`` rows in parts
    of ``part_rows`` (the last fewer) under ``prefix``, their row hashes in
    order digested as ``digest``."""

    manifest_id: str
    prefix: str
    rows: int
    part_rows: int
    digest: str

    @property
    def parts(self) -> list[str]:
        n = -(-self.rows // self.part_rows) if self.rows else 0
        return [f"{self.prefix}/{i:06d}" for i in range(n)]

    def source(self) -> tuple[Manifest, Callable[[str], str]]:
        """The copy as a manifest of one piece a part, and how to read a
        "chunk" of it (its name is its object key)."""
        parts = self.parts
        lengths = np.full(len(parts), self.part_rows, dtype=np.int64)
        if len(parts):
            lengths[-1] = self.rows - self.part_rows * (len(parts) - 1)
        one = Manifest.from_columns(
            parts, np.arange(len(parts)), np.zeros(len(parts), np.int64), lengths
        )
        return one, _same


def _same(key: str) -> str:
    return key


def estimated_bytes(store: ObjectStore, manifest: Manifest) -> int:
    """About what a read copy of ``manifest`` would take: each chunk's stored
    bytes in the share of its rows the manifest uses (their footers only)."""
    cols = manifest.columns
    used = np.bincount(cols.chunk, weights=cols.length, minlength=len(cols.chunks))
    total = 0.0
    for k, name in enumerate(cols.chunks):
        if used[k] <= 0:
            continue
        meta = footer(store, chunk_key(name), keep=False)
        size = sum(
            meta.row_group(g).column(c).total_compressed_size
            for g in range(meta.num_row_groups)
            for c in range(meta.num_columns)
        )
        total += size * min(used[k] / max(meta.num_rows, 1), 1.0)
    return int(total)


def _digest() -> blake3.blake3:
    return blake3.blake3(b"dsa.chunk.v1\0")  # as core.hashing.chunk_id hashes row hashes


def _update(digest: blake3.blake3, hashes: pa.ChunkedArray) -> None:
    """Feed a ``_row_hash`` column's bytes (16 a row) to ``digest``, uncopied."""
    for arr in hashes.chunks:
        digest.update(arr.buffers()[1].slice(arr.offset * 16, len(arr) * 16))


def write(
    store: ObjectStore, manifest: Manifest, schema: Schema, *, tmp_dir: Path
) -> tuple[Copy, int]:
    """Write a read copy of ``manifest`` (a table of ``schema``): its rows read
    window by window (``core.scan``), cut into parts of ``DSA_CHUNK_ROWS``
    rows, each stored whole before the next is written; the copy and its
    size in bytes. Either every part is stored or none is left."""
    settings = get_settings()
    part_rows, group_rows = settings.chunk_rows, settings.row_group_rows
    stored = chunk_schema(list(schema.columns))
    # chunks written at different times may disagree on a column's nullability
    nullable = pa.schema(
        [f if f.name == ROW_HASH_COLUMN else f.with_nullable(True) for f in stored]
    )
    copy = Copy(
        manifest.id,
        f"layouts/{manifest.id}-{uuid.uuid4().hex[:16]}",
        manifest.row_count,
        part_rows,
        "",
    )
    digest = _digest()
    keys = copy.parts
    tmp_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    size = 0
    try:
        parts = Rebatch(part_rows)
        tables = Scan(store, manifest, nullable.names, schema=nullable)
        for table in parts.all(tables):
            key = keys[len(written)]
            meta = {
                b"dsa.layout": LAYOUT_VERSION.encode(),
                b"dsa.manifest": manifest.id.encode(),
                b"dsa.part": str(len(written)).encode(),
            }
            tmp = tmp_dir / f"layout-{uuid.uuid4().hex}.parquet"
            try:
                with parquet_writer(tmp, nullable.with_metadata(meta)) as writer:
                    writer.write_table(table, row_group_size=group_rows)
                size += tmp.stat().st_size
                store.put_file(key, tmp, move=True)
            finally:
                tmp.unlink(missing_ok=True)
            written.append(key)
            _update(digest, table.column(ROW_HASH_COLUMN))
        if len(written) != len(keys):
            raise RuntimeError(f"read copy of {manifest.id}: {len(written)} of {len(keys)} parts")
    except BaseException:
        for key in written:
            store.delete(key)
        raise
    done = Copy(copy.manifest_id, copy.prefix, copy.rows, copy.part_rows, digest.hexdigest())
    return done, size


def rows_digest(store: ObjectStore, manifest: Manifest) -> str:
    """BLAKE3 of the manifest's row hashes in table order, as a chunk id: what
    a read copy of it must digest to (read window by window, bounded memory)."""
    digest = _digest()
    for t in Scan(store, manifest, [ROW_HASH_COLUMN]):
        _update(digest, t.column(ROW_HASH_COLUMN))
    return str(digest.hexdigest())


_verified: LRU[str, bool] = LRU(max_items=16_384)  # copies (by prefix) and parts (by key) checked


def verify(store: ObjectStore, copy: Copy) -> bool:
    """Whether ``copy`` is whole: every part present, readable, naming its
    manifest and place, and the parts' rows adding up. Checked once per
    process (then only that its first part is there); a missing, damaged
    or unreadable copy is False, never an error.

    Only the parts' footers are read, as a read of a chunk trusts the chunk:
    whether the rows are the ones digested when the copy was written is
    ``verify_rows``, which fsck (issue 14) is to run; nothing runs it on the
    read path (reading a 35M-row copy's 560 MB of row hashes took 1.5 s and
    ~200 MB of the API's memory before an export's first row)."""
    try:
        parts = copy.parts
        if _verified.get(copy.prefix):
            # checked already: one stat per read, not one per part (a copy is
            # deleted whole; a part deleted alone ends that read with an error)
            if parts and store.exists(parts[0]):
                return True
            _verified.pop(copy.prefix)
            return False
        rows = 0
        for i in range(len(parts)):
            got = _part_rows(store, copy, i, keep=False)
            if got is None:
                return False
            rows += got
    except (OSError, pa.ArrowException, StoredObjectError):
        return False
    ok = rows == copy.rows
    if ok:
        _verified.put(copy.prefix, True)
    return ok


def _part_rows(store: ObjectStore, copy: Copy, i: int, *, keep: bool = True) -> int | None:
    """Part ``i``'s rows, read from its own footer (not one parsed before;
    kept for a read unless ``keep`` is false), or None when the footer does
    not name this copy's manifest and that place."""
    key = copy.parts[i]
    forget(key)
    starts, kv = row_group_starts(store, key, keep=keep)
    if (
        kv.get(b"dsa.layout") != LAYOUT_VERSION.encode()
        or kv.get(b"dsa.manifest") != copy.manifest_id.encode()
        or kv.get(b"dsa.part") != str(i).encode()
    ):
        return None
    return int(starts[-1])


def verify_parts(store: ObjectStore, copy: Copy, parts: Iterable[int]) -> bool:
    """Whether the parts numbered ``parts`` of ``copy`` are whole: present,
    readable, naming its manifest and their place, each holding the rows
    its place says (``part_rows``, the last the rest). What reading some of
    a copy's rows needs (a page of changes), without ``verify``'s pass over
    every part; each part checked once per process, its footer kept for the
    read that follows. False, never an error, when one is not."""
    keys = copy.parts
    try:
        for i in parts:
            if not 0 <= i < len(keys):
                return False
            if _verified.get(keys[i]):
                continue
            last = copy.rows - copy.part_rows * (len(keys) - 1)
            if _part_rows(store, copy, i) != (last if i == len(keys) - 1 else copy.part_rows):
                return False
            _verified.put(keys[i], True)
    except (OSError, pa.ArrowException, StoredObjectError):
        return False
    return True


def forget_check(copy: Copy) -> None:
    """Forget that ``copy`` or its parts passed ``verify``/``verify_parts``
    in this process (a read of it failed since): they are checked again."""
    _verified.pop(copy.prefix)
    for key in copy.parts:
        _verified.pop(key)


def verify_rows(store: ObjectStore, copy: Copy) -> bool:
    """Whether ``copy`` is whole (``verify``) and its parts' ``_row_hash``
    columns, in order, digest to the digest recorded when it was written:
    its rows are the version's (read a part at a time; fsck's check)."""
    _verified.pop(copy.prefix)
    if not verify(store, copy):
        return False
    try:
        digest = _digest()
        for key in copy.parts:
            with opened(store, key) as pf:
                _update(digest, pf.read(columns=[ROW_HASH_COLUMN]).column(0))
        ok = str(digest.hexdigest()) == copy.digest
    except (OSError, pa.ArrowException, StoredObjectError):
        ok = False
    if not ok:
        _verified.pop(copy.prefix)  # not whole after all: check it again before a read
    return ok


def delete(store: ObjectStore, copy: Copy) -> None:
    """Delete the copy's parts (a read under way keeps the files it has open)."""
    forget_check(copy)
    for key in copy.parts:
        store.delete(key)

"""Reading one version of a table at arbitrary positions: stored row hashes,
hashes of a projection (some columns, maybe cast), and the rows themselves."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core import deadline
from core.chunks import chunk_key, read_chunk_columns, read_hashes, row_group_starts, take_rows
from core.hashing import row_hashes
from core.lru import LRU
from core.objects import Manifest, Schema
from core.schema import Column, arrow_type
from core.storage import ObjectStore
from core.typed_values import as_text

_projection_cache: LRU[tuple[str, tuple[tuple[str, str, str], ...]], np.ndarray] = LRU(
    max_items=4096, max_bytes=128 * 1024**2, size_of=lambda a: a.nbytes
)


# reads chunks in parallel (Parquet decoding and hashing release the GIL);
# one pool for the process, since starting threads per request costs ~5 ms
POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="compare")
HASH_BATCH = 16  # chunks whose hash columns are in hand at once (stored_hashes)

# logical types whose values are exactly an int64
_EXACT = {"integer", "date", "datetime", "datetime_tz"}


@dataclass(frozen=True)
class Projected:
    """A column as compared: read as ``source`` on this side, hashed under
    ``name`` as ``type`` (cast when the sides disagree on the type)."""

    source: str
    name: str
    type: str


class TableRows:
    """One version of a table, read at positions. Row hashes always come from
    its manifest's chunks (matching rows goes by chunk identity); row values
    may come from elsewhere with the same rows in the same order: a read copy
    (``read_from``)."""

    def __init__(self, store: ObjectStore, manifest: Manifest, schema: Schema) -> None:
        self.store = store
        self.manifest = manifest
        self.schema = schema
        self._values: tuple[Manifest, Callable[[str], str]] = (manifest, chunk_key)

    def read_from(self, manifest: Manifest, key_of: Callable[[str], str]) -> None:
        """Read row values from ``manifest``'s "chunks", each the object
        ``key_of(name)``: a read copy of this version (the same rows in the
        same order, in a few parts), where a page of changes decodes a row
        group or two, not one in each of the dozen chunks its rows lie in."""
        if manifest.row_count != self.manifest.row_count:
            raise ValueError("a read copy holds the version's rows, as many")
        self._values = (manifest, key_of)

    def _locate(
        self, positions: np.ndarray, manifest: Manifest | None = None
    ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Chunk number and row in that chunk of each position."""
        cols = (manifest or self.manifest).columns
        piece = np.searchsorted(cols.pos, positions, side="right") - 1
        return cols.chunk[piece], cols.start[piece] + (positions - cols.pos[piece]), cols.chunks

    def groups_to_read(self, positions: np.ndarray) -> int:
        """How many row groups reading the rows at ``positions`` from the
        manifest's chunks decodes."""
        chunk_of, row, names = self._locate(np.unique(positions))
        n = 0
        for c in np.unique(chunk_of).tolist():
            starts, _ = row_group_starts(self.store, chunk_key(names[c]))
            n += len(np.unique(np.searchsorted(starts, row[chunk_of == c], side="right")))
        return n

    def stored_hashes(self, positions: np.ndarray) -> np.ndarray:
        """The ``_row_hash`` of each row at ``positions`` as (n, 2) uint64."""
        out = np.empty((len(positions), 2), dtype=np.uint64)
        if len(positions) == 0:
            return out
        chunk_of, row, names = self._locate(positions)
        order = np.argsort(chunk_of, kind="stable")
        wanted, first = np.unique(chunk_of[order], return_index=True)
        ends = np.append(first[1:], len(order))
        # each chunk's hash column is read (and cached) once; reads overlap
        # on a few threads (Parquet decoding releases the GIL), a batch of
        # chunks at a time: a 0.1 % edit of a 100M-row table touches all of
        # its 763 chunks, 1.6 GB of hashes if held at once
        for lo in range(0, len(wanted), HASH_BATCH):
            batch = wanted[lo : lo + HASH_BATCH]
            columns = deadline.map_on(POOL, lambda c: read_hashes(self.store, names[int(c)]), batch)
            for k, col in enumerate(columns, lo):
                sel = order[first[k] : ends[k]]
                out[sel] = col[row[sel]]
        return out

    def read(self, positions: np.ndarray, columns: list[str]) -> pa.Table:
        """The named columns of the rows at ``positions`` (any order, repeats
        allowed), in that order."""
        if len(positions) == 0:
            return pa.table({c: pa.array([], arrow_type(self._type(c))) for c in columns})
        uniq, back = np.unique(positions, return_inverse=True)
        manifest, key_of = self._values
        chunk_of, row, names = self._locate(uniq, manifest)

        def one(c: int) -> tuple[pa.Table, np.ndarray]:
            sel = np.flatnonzero(chunk_of == c)
            rows, inv = np.unique(row[sel], return_inverse=True)
            part = take_rows(self.store, names[c], rows, tuple(columns), key_of)
            # chunks may disagree on a column's nullability; rows here are nullable
            nullable = pa.schema([f.with_nullable(True) for f in part.schema])
            return part.take(pa.array(inv)).cast(nullable), sel

        chunks = np.unique(chunk_of).tolist()
        # a page of changes holds rows of many chunks (a row group or more of
        # each to decode): chunks are read on the pool's threads
        done = deadline.map_on(POOL, one, chunks) if len(chunks) > 1 else [one(chunks[0])]
        parts = [part for part, _ in done]
        where = [sel for _, sel in done]
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        # rows came chunk by chunk: put them back in position order, then repeat
        order = np.empty(len(uniq), dtype=np.int64)
        order[np.concatenate(where)] = np.arange(len(uniq))
        return table.take(pa.array(order[back]))

    def _type(self, name: str) -> str:
        return next(c.type for c in self.schema.columns if c.name == name)

    def projected_hashes(self, positions: np.ndarray, cols: list[Projected]) -> np.ndarray:
        """Row hashes of the rows at ``positions`` over ``cols`` only.

        A few columns (a primary key) are hashed for whole chunks and cached,
        since the rows asked for are scattered over every row group of the
        chunks anyway and the next compare re-uses most chunks."""
        if len(positions) == 0:
            return np.empty((0, 2), dtype=np.uint64)
        if len(cols) > 2:
            return self._hash(self.read(positions, [c.source for c in cols]), cols)
        out = np.empty((len(positions), 2), dtype=np.uint64)
        chunk_of, row, names = self._locate(positions)
        key = tuple((c.source, c.name, c.type) for c in cols)

        def hashed(c: int) -> np.ndarray:
            cid = names[c]
            got = _projection_cache.get((cid, key))
            if got is None:
                table = read_chunk_columns(self.store, cid, tuple(p.source for p in cols))
                got = self._hash(table, cols)
                _projection_cache.put((cid, key), got)
            return got

        wanted = np.unique(chunk_of)
        # chunk by chunk on a few threads: reading and hashing release the GIL
        arrays = deadline.map_on(POOL, hashed, wanted.tolist())
        for c, got in zip(wanted, arrays, strict=True):
            sel = chunk_of == c
            out[sel] = got[row[sel]]
        return out

    def _hash(self, table: pa.Table, cols: list[Projected]) -> np.ndarray:
        """A 16-byte identity per row over ``cols``: the row hash; or, for one
        integer-like column (the usual primary key), its value and a null flag,
        which is exact and ~10x cheaper than hashing."""
        if len(cols) == 1 and cols[0].type in _EXACT and self._type(cols[0].source) == cols[0].type:
            arr = table.column(0)
            arr = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
            if pa.types.is_date32(arr.type):
                arr = arr.cast(pa.int32())
            ints = pc.fill_null(arr.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
            out = np.empty((len(arr), 2), dtype=np.uint64)
            out[:, 0] = ints.view(np.uint64)
            out[:, 1] = arr.is_null().to_numpy(zero_copy_only=False)
            return out
        arrays = []
        for i, c in enumerate(cols):
            arr = table.column(i)
            if self._type(c.source) != c.type:
                arr = as_text(arr) if c.type == "string" else pc.cast(arr, arrow_type(c.type))
            arrays.append(arr)
        t = pa.table(arrays, names=[c.name for c in cols])
        digest = row_hashes(t, [Column(c.name, c.type) for c in cols])
        return np.frombuffer(digest, dtype=np.uint64).reshape(-1, 2)

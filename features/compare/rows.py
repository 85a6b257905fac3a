"""Reading one version of a table at arbitrary positions: stored row hashes,
hashes of a projection (some columns, maybe cast), and the rows themselves."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.chunks import read_hashes, read_rows
from core.hashing import row_hashes
from core.objects import Manifest, Schema
from core.schema import Column, arrow_type
from core.storage import ObjectStore


@dataclass(frozen=True)
class Projected:
    """A column as compared: read as ``source`` on this side, hashed under
    ``name`` as ``type`` (cast when the sides disagree on the type)."""

    source: str
    name: str
    type: str


class TableRows:
    def __init__(self, store: ObjectStore, manifest: Manifest, schema: Schema) -> None:
        self.store = store
        self.manifest = manifest
        self.schema = schema

    @cached_property
    def _index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Per piece: first position, chunk number, first row in the chunk;
        and the chunk ids by number."""
        pieces = self.manifest.pieces
        names: dict[str, int] = {}
        chunk = np.fromiter((names.setdefault(p.chunk, len(names)) for p in pieces), np.int64)
        starts = np.fromiter((p.start for p in pieces), np.int64, len(pieces))
        pos = np.asarray(self.manifest.starts, dtype=np.int64)
        return pos, chunk, starts, list(names)

    def stored_hashes(self, positions: np.ndarray) -> np.ndarray:
        """The ``_row_hash`` of each row at ``positions`` as (n, 2) uint64."""
        out = np.empty((len(positions), 2), dtype=np.uint64)
        if len(positions) == 0:
            return out
        pos, chunk, starts, names = self._index
        piece = np.searchsorted(pos, positions, side="right") - 1
        row = starts[piece] + (positions - pos[piece])
        chunk_of = chunk[piece]
        for c in np.unique(chunk_of):  # each chunk's hash column is read (and cached) once
            sel = chunk_of == c
            out[sel] = read_hashes(self.store, names[int(c)])[row[sel]]
        return out

    def read(self, positions: np.ndarray, columns: list[str]) -> pa.Table:
        """The named columns of the rows at ``positions`` (any order, repeats
        allowed), in that order."""
        if len(positions) == 0:
            return pa.table({c: pa.array([], arrow_type(self._type(c))) for c in columns})
        order = np.argsort(positions, kind="stable")
        sorted_pos = positions[order]
        uniq = np.unique(sorted_pos)
        brk = np.flatnonzero(np.diff(uniq) != 1) + 1
        parts = []
        for run in np.split(uniq, brk):
            for chunk, start, length in self.manifest.slices(int(run[0]), len(run)):
                parts.append(read_rows(self.store, chunk, start, length, tuple(columns)))
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        take = np.searchsorted(uniq, positions)
        return table.take(pa.array(take))

    def _type(self, name: str) -> str:
        return next(c.type for c in self.schema.columns if c.name == name)

    def projected_hashes(self, positions: np.ndarray, cols: list[Projected]) -> np.ndarray:
        """Row hashes of the rows at ``positions`` over ``cols`` only."""
        if len(positions) == 0:
            return np.empty((0, 2), dtype=np.uint64)
        table = self.read(positions, [c.source for c in cols])
        arrays = []
        for i, c in enumerate(cols):
            arr = table.column(i)
            if self._type(c.source) != c.type:
                arr = pc.cast(arr, arrow_type(c.type))
            arrays.append(arr)
        t = pa.table(arrays, names=[c.name for c in cols])
        digest = row_hashes(t, [Column(c.name, c.type) for c in cols])
        return np.frombuffer(digest, dtype=np.uint64).reshape(-1, 2)

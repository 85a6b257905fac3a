"""Versions that cost what changed: a new table's rows matched against the
rows its parent version already stored.

``DedupWriter`` takes the converted batches of an import (like
``service.ChunkWriter``) but stores nothing at first: each batch is spilled to
an Arrow IPC file in the job's work directory and its row hashes are kept
(16 bytes a row). At ``finish``:

1. the parent table's row hashes are read from its chunks' ``_row_hash``
   column, with where each row lives (chunk, position);
2. new and parent rows are matched on (hash, occurrence): the k-th copy of a
   row in the new table pairs with the k-th copy in the parent, so duplicate
   rows are neither lost nor multiplied (one polars join);
3. only the rows without a partner are read back from the spill and written
   into fresh chunks (their positions there are known in advance: the k-th
   new row lands at chunk k // chunk_rows, position k % chunk_rows);
4. the manifest is the new table's rows in order, cut into runs of rows that
   sit next to each other in one chunk: a re-upload with 1 % of its rows
   edited re-uses 99 % of the parent's storage wherever the edits are.

Memory: the hashes of both tables (about 40 bytes a row for the pair) plus one
spilled batch; the spill needs local disk about the size of the typed data.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from core.chunks import ROW_HASH_COLUMN, read_rows
from core.hashing import row_hashes
from core.objects import Manifest, Piece
from core.schema import Column
from core.storage import ObjectStore


class DedupWriter:
    def __init__(
        self,
        store: ObjectStore,
        columns: list[Column],
        work: Path,
        pool: ThreadPoolExecutor,
        parent: Manifest,
        chunk_rows: int,
        chunk_writer: Any,
    ) -> None:
        self.store = store
        self.columns = columns
        self.work = work
        self.pool = pool
        self.parent = parent
        self.chunk_rows = chunk_rows
        self.make_chunk_writer = chunk_writer
        self.spill_path = work / f"dedup-{id(self)}.arrow"
        self._sink: pa.ipc.RecordBatchFileWriter | None = None
        self.hashes: list[bytes] = []
        self.rows = 0

    def add(self, batch: pa.RecordBatch) -> None:
        if self._sink is None:
            self._sink = pa.ipc.new_file(str(self.spill_path), batch.schema)
        self._sink.write_batch(batch)
        self.hashes.append(row_hashes(batch, self.columns))
        self.rows += batch.num_rows

    def abandon(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        self.spill_path.unlink(missing_ok=True)
        self.hashes, self.rows = [], 0

    def finish(self) -> list[Piece]:
        if self._sink is not None:
            self._sink.close()
        if self.rows == 0:
            return []
        parent_chunks, parent = self._parent_rows()
        new = pl.DataFrame({"h": _fixed16(b"".join(self.hashes), self.rows)}).with_columns(
            occ=pl.int_range(pl.len()).over("h"),
            row=pl.int_range(pl.len(), dtype=pl.UInt64),
        )
        matched = new.join(parent, on=["h", "occ"], how="left").sort("row")
        unmatched = matched.get_column("chunk").is_null()
        k = unmatched.cast(pl.UInt64).cum_sum() - 1  # index among the new rows
        new_chunk_base = len(parent_chunks)
        placed = matched.select(
            chunk=pl.when(unmatched)
            .then(pl.lit(new_chunk_base, pl.UInt64) + k // self.chunk_rows)
            .otherwise(pl.col("chunk").cast(pl.UInt64)),
            pos=pl.when(unmatched)
            .then(k % self.chunk_rows)
            .otherwise(pl.col("pos").cast(pl.UInt64)),
        )
        new_ids = self._write_unmatched(unmatched.to_arrow())
        ids = parent_chunks + new_ids
        return _runs(placed, ids)

    def _parent_rows(self) -> tuple[list[str], pl.DataFrame]:
        """The parent table's rows: (hash, occurrence, chunk index, position)."""
        chunks: list[str] = []
        index: dict[str, int] = {}
        parts = []
        for piece in self.parent.pieces:
            if piece.chunk not in index:
                index[piece.chunk] = len(chunks)
                chunks.append(piece.chunk)
            got = read_rows(self.store, piece.chunk, piece.start, piece.length, (ROW_HASH_COLUMN,))
            hashes = got.column(0).combine_chunks().cast(pa.binary())
            parts.append(
                pl.DataFrame(
                    {
                        "h": pl.from_arrow(hashes),
                        "chunk": pl.repeat(
                            index[piece.chunk], piece.length, dtype=pl.UInt32, eager=True
                        ),
                        "pos": pl.int_range(
                            piece.start, piece.start + piece.length, dtype=pl.UInt32, eager=True
                        ),
                    }
                )
            )
        if not parts:
            empty = pl.DataFrame(
                schema={"h": pl.Binary, "chunk": pl.UInt32, "pos": pl.UInt32, "occ": pl.Int64}
            )
            return chunks, empty
        frame = pl.concat(parts).with_columns(occ=pl.int_range(pl.len()).over("h"))
        return chunks, frame

    def _write_unmatched(self, unmatched: pa.Array | pa.ChunkedArray) -> list[str]:
        writer = self.make_chunk_writer()
        offset = 0
        mask = unmatched.combine_chunks() if isinstance(unmatched, pa.ChunkedArray) else unmatched
        with pa.memory_map(str(self.spill_path)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                keep = mask.slice(offset, batch.num_rows)
                offset += batch.num_rows
                if keep.true_count:
                    writer.add(batch.filter(keep))
        self.spill_path.unlink(missing_ok=True)
        return [p.chunk for p in writer.finish()]


def _fixed16(data: bytes, n: int) -> pl.Series:
    arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(data)])
    return pl.from_arrow(arr.cast(pa.binary()))  # type: ignore[return-value]


def _runs(placed: pl.DataFrame, ids: list[str]) -> list[Piece]:
    """Consecutive rows at consecutive positions of one chunk become one piece."""
    runs = (
        placed.with_columns(
            brk=(pl.col("chunk") != pl.col("chunk").shift(1))
            | (pl.col("pos") != pl.col("pos").shift(1) + 1)
        )
        .with_columns(run=pl.col("brk").fill_null(True).cum_sum())
        .group_by("run", maintain_order=True)
        .agg(chunk=pl.col("chunk").first(), start=pl.col("pos").first(), length=pl.len())
    )
    return [
        Piece(ids[c], int(s), int(n))
        for c, s, n in zip(
            runs.get_column("chunk").to_list(),
            runs.get_column("start").to_list(),
            runs.get_column("length").to_list(),
            strict=True,
        )
    ]

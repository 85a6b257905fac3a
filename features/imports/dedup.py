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

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from core.chunks import ROW_HASH_COLUMN, chunk_key
from core.hashing import row_hashes
from core.objects import Manifest, Piece
from core.schema import Column
from core.storage import ObjectStore
from features.imports.errors import ImportFailed
from features.imports.matching import EXTERNAL_ROWS, Pairing, halves, match, spill_parent

# Compaction: when matching would leave the table in more pieces than this
# (at least COMPACT_MIN_PIECES, and runs of fewer than COMPACT_MIN_RUN rows on
# average), the version is stored afresh instead. Re-uploads of a 1M-row table
# with 1 % of rows updated, 0.5 % inserted and 0.5 % deleted at random add
# ~30,000 pieces each (~294,000 after ten: runs of ~3.4 rows) and are kept as
# pieces; storing a version afresh costs the whole table again, so it is kept
# for versions that are mostly single-row pieces (decision 0011).
COMPACT_MIN_PIECES = 1024
COMPACT_MIN_RUN = 2
# Batches whose row hashes are still being computed on the pool, at most.
MAX_PENDING_HASHES = 4


class DedupWriter:
    # read the parent's rows on the pool while the file is parsed
    prefetch_parent = True

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
        # row hashes of each batch, computed on the pool (in order)
        self._hashing: list[Future[bytes]] = []
        self._hashed: list[bytes] = []  # row hashes of the batches done (in memory)
        self._parent: Future[tuple[list[str], pl.DataFrame]] | None = None
        # past EXTERNAL_ROWS on either side, both go to disk (``matching``)
        self._pairing: Pairing | None = None
        self._parent_spilled: Future[None] | None = None
        self.rows = 0
        # set by ``finish`` when every row was matched against every parent
        # row and the rows written fresh are those with no partner: none of
        # them equals a parent row the version leaves out (decision 0041)
        self.exhaustive = False

    @property
    def hashes(self) -> list[bytes]:
        return self._hashed + [f.result() for f in self._hashing]

    def add(self, batch: pa.RecordBatch) -> None:
        if self._parent is None and self._pairing is None and self.prefetch_parent:
            if self.parent.row_count > EXTERNAL_ROWS:
                self._go_external()
            else:
                self._parent = self.pool.submit(self._parent_rows)
        if self._sink is None:
            self._sink = pa.ipc.new_file(str(self.spill_path), batch.schema)
        self._sink.write_batch(batch)
        pending = [f for f in self._hashing if not f.done()]
        if len(pending) >= MAX_PENDING_HASHES:  # back-pressure: bounded memory
            pending[0].result()
        self._hashing.append(self.pool.submit(row_hashes, batch, self.columns))
        self.rows += batch.num_rows
        if self._pairing is None and self.prefetch_parent and self.rows > EXTERNAL_ROWS:
            self._go_external()
        self._collect(wait=False)

    def _go_external(self) -> None:
        """From now on, the row hashes go to disk; the parent's rows too,
        unless they are being read into memory already (a small parent)."""
        self._pairing = Pairing(self.work, f"{id(self)}")
        if self._parent is None:
            self._parent_spilled = self.pool.submit(
                spill_parent, self._pairing, self.store, self.parent
            )
        for h in self._hashed:
            self._pairing.add_new(*halves(h))
        self._hashed = []

    def _collect(self, *, wait: bool) -> None:
        """The row hashes computed so far, in order, kept (or spilled)."""
        while self._hashing and (wait or self._hashing[0].done()):
            h = self._hashing.pop(0).result()
            if self._pairing is not None:
                self._pairing.add_new(*halves(h))
            else:
                self._hashed.append(h)

    def abandon(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        if self._pairing is not None:
            self._pairing.stop.set()  # the parent's spill stops at its next slice
        running: list[Future[Any]] = [
            *self._hashing,
            *(f for f in (self._parent, self._parent_spilled) if f is not None),
        ]
        for f in running:
            if not f.cancel():
                f.exception()  # wait for it: it may still read the batch
        self.spill_path.unlink(missing_ok=True)
        if self._pairing is not None:
            self._pairing.close()
        self._hashing, self._hashed, self._parent, self.rows = [], [], None, 0
        self._pairing = self._parent_spilled = None

    def finish(self) -> Sequence[Piece]:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        if self.rows == 0:
            self.abandon()  # a parent spilled for nothing: stopped, its files gone
            return []
        if self._pairing is not None:
            return self._finish_external(self._pairing)
        parent_chunks, parent = (
            self._parent.result() if self._parent is not None else self._parent_rows()
        )
        new = _halves(pa.py_buffer(b"".join(self.hashes)), 0, self.rows)
        matched = match(new, parent.select("h1", "h2", "chunk", "pos"))
        unmatched, runs = place(matched, len(parent_chunks), self.chunk_rows)
        if too_fragmented(runs.height, self.rows):
            # too fragmented to read well: store this version afresh, in order
            return self._write(None)
        ids = parent_chunks + self._write(unmatched.to_arrow())
        self.exhaustive = True
        return _pieces(ids, runs)

    def _finish_external(self, pairing: Pairing) -> Sequence[Piece]:
        """``finish`` by the external match (``matching``)."""
        self._collect(wait=True)
        try:
            if self._parent is not None:  # read into memory before the file grew
                parent_chunks, parent = self._parent.result()
                self._parent = None
                columns = [parent.get_column(c).to_numpy() for c in ("h1", "h2", "chunk", "pos")]
                pairing.add_old(*columns)
                del parent, columns
            else:
                assert self._parent_spilled is not None
                self._parent_spilled.result()
                parent_chunks = list(self.parent.columns.chunks)
            max_runs = max(COMPACT_MIN_PIECES, self.rows // COMPACT_MIN_RUN)
            placed = pairing.place(len(parent_chunks), self.chunk_rows, max_runs)
        finally:
            pairing.close()
            self._pairing = None
        if placed is None:  # too fragmented: stored afresh, as in memory
            return self._write(None)
        unmatched, runs = placed
        ids = parent_chunks + self._write(unmatched.to_arrow())
        self.exhaustive = True
        return _pieces(ids, runs)

    def _parent_rows(self, extra: list[str] | None = None) -> tuple[list[str], pl.DataFrame]:
        """The parent table's rows in order: (hash, chunk index, position, occurrence).

        Each distinct chunk's hash column is read once; the manifest's pieces
        then become row positions with vector operations only (a fragmented
        manifest can have thousands of pieces)."""
        chunks = list(self.parent.columns.chunks)
        if not chunks:
            schema: dict[str, Any] = {
                "chunk": pl.UInt32,
                "pos": pl.UInt32,
                "h1": pl.UInt64,
                "h2": pl.UInt64,
            }
            return chunks, pl.DataFrame(schema=schema)
        return chunks, self._parent_frame(chunks, extra)

    def _parent_frame(self, chunks: list[str], extra: list[str] | None) -> pl.DataFrame:
        columns, extras, offsets, total = [], [], [], 0
        for cid in chunks:
            with self.store.open_arrow(chunk_key(cid)) as f:
                part = pq.read_table(f, columns=[ROW_HASH_COLUMN, *(extra or [])])
            columns.append(part.column(0))
            if extra:
                frame = pl.from_arrow(part.select(extra))
                assert isinstance(frame, pl.DataFrame)
                extras.append(frame)
            offsets.append(total)
            total += part.num_rows
        combined = [c.combine_chunks() for c in columns]
        every = pl.concat([_halves(a.buffers()[1], a.offset, len(a)) for a in combined])
        if extra:
            every = pl.concat([every, pl.concat(extras)], how="horizontal")
        _, rows = positions(self.parent)
        base = pl.Series("base", offsets, dtype=pl.UInt64)
        global_index = base.gather(rows.get_column("chunk")) + rows.get_column("pos").cast(
            pl.UInt64
        )
        return pl.concat([rows, every[global_index]], how="horizontal")

    def _write(self, unmatched: pa.Array | pa.ChunkedArray | None) -> Any:
        """Store the spilled rows the mask selects (all of them without one):
        chunk ids in order when masked, else the pieces of the whole table."""
        writer = self.make_chunk_writer()
        offset = 0
        mask = unmatched.combine_chunks() if isinstance(unmatched, pa.ChunkedArray) else unmatched
        # read, not mapped: a mapped spill of a 100M-row file would count
        # its ~10 GB towards the process's resident memory as it is read
        with pa.OSFile(str(self.spill_path)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                if mask is None:
                    writer.add(batch)
                    continue
                keep = mask.slice(offset, batch.num_rows)
                offset += batch.num_rows
                if keep.true_count:
                    writer.add(batch.filter(keep))
        self.spill_path.unlink(missing_ok=True)
        pieces = writer.finish()
        return pieces if mask is None else [p.chunk for p in pieces]


def positions(manifest: Manifest) -> tuple[list[str], pl.DataFrame]:
    """The table's rows in order as (chunk index, position), with the chunk ids
    the indexes point into: vector operations over the pieces only (a
    fragmented manifest can have hundreds of thousands)."""
    cols = manifest.columns  # arrays, in the chunks' first-use order
    spans = pl.DataFrame({"chunk": cols.chunk, "start": cols.start, "length": cols.length}).cast(
        pl.UInt32
    )
    rows = (
        spans.with_columns(
            pos=pl.int_ranges("start", pl.col("start") + pl.col("length"), dtype=pl.UInt32)
        )
        .select("chunk", "pos")
        .explode("pos")
    )
    return list(cols.chunks), rows


def place(
    matched: pl.DataFrame, new_chunk_base: int, chunk_rows: int
) -> tuple[pl.Series, pl.DataFrame]:
    """Where each row of the new version lives: its partner's (chunk, pos), or
    the next free place in the new chunks (the k-th unmatched row lands in new
    chunk k // chunk_rows at k % chunk_rows). Returns the unmatched mask and
    the runs of rows that sit next to each other in one chunk."""
    unmatched = matched.get_column("chunk").is_null()
    k = unmatched.cast(pl.UInt64).cum_sum() - 1  # index among the new rows
    placed = matched.select(
        chunk=pl.when(unmatched)
        .then(pl.lit(new_chunk_base, pl.UInt64) + k // chunk_rows)
        .otherwise(pl.col("chunk").cast(pl.UInt64)),
        pos=pl.when(unmatched).then(k % chunk_rows).otherwise(pl.col("pos").cast(pl.UInt64)),
    )
    return unmatched, _runs(placed)


def too_fragmented(runs: int, rows: int) -> bool:
    return runs > max(COMPACT_MIN_PIECES, rows // COMPACT_MIN_RUN)


def _pieces(ids: list[str], runs: pl.DataFrame) -> Sequence[Piece]:
    """Runs (chunk index, start, length) as pieces, kept as columns (a version
    can have hundreds of thousands; ``Manifest.of`` takes them as they are)."""
    return Manifest.from_columns(
        ids,
        runs.get_column("chunk").to_numpy(),
        runs.get_column("start").to_numpy(),
        runs.get_column("length").to_numpy(),
    ).pieces


def _halves(buf: pa.Buffer, offset: int, n: int) -> pl.DataFrame:
    """16-byte hashes as two u64 columns: numeric keys join and group several
    times faster than binary ones (measured: 1M rows)."""
    words = pl.from_arrow(
        pa.UInt64Array.from_buffers(pa.uint64(), 2 * n, [None, buf], offset=2 * offset)
    )
    assert isinstance(words, pl.Series)
    return pl.DataFrame({"h1": words.gather_every(2), "h2": words.gather_every(2, offset=1)})


def _runs(placed: pl.DataFrame) -> pl.DataFrame:
    """Consecutive rows at consecutive positions of one chunk become one piece
    (where a run breaks, found by comparing each row with the previous one)."""
    if placed.height == 0:
        return pl.DataFrame(schema={"chunk": pl.UInt64, "start": pl.UInt64, "length": pl.UInt64})
    brk = placed.select(
        (
            (pl.col("chunk") != pl.col("chunk").shift(1))
            | (pl.col("pos") != pl.col("pos").shift(1) + 1)
        ).fill_null(True)
    ).to_series()
    first = brk.arg_true()
    ends = pl.concat([first.slice(1), pl.Series([placed.height], dtype=first.dtype)])
    return pl.DataFrame(
        {
            "chunk": placed.get_column("chunk").gather(first),
            "start": placed.get_column("pos").gather(first),
            "length": (ends - first).cast(pl.UInt64),
        }
    )


class UpsertWriter(DedupWriter):
    """Upsert by primary key: rows whose key the table has replace theirs in
    place; rows with new keys are appended in file order. A replacing row equal
    to the one it replaces keeps pointing at the stored row; only rows that are
    new or changed are stored.

    Keys must be unique in the file and never null (``duplicate_key``,
    ``null_key``)."""

    prefetch_parent = False

    def __init__(self, *args: Any, key: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key = key

    def finish(self) -> Sequence[Piece]:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        missing = [k for k in self.key if k not in [c.name for c in self.columns]]
        if missing:
            raise ImportFailed(
                f"the file has no primary key column {', '.join(map(repr, missing))}",
                code="schema_mismatch",
                missing=missing,
            )
        file = self._file_rows()
        _check_keys(file, self.key)
        parent_chunks, parent = self._parent_rows(extra=self.key)
        if not parent_chunks:  # a new or empty table: every row is added
            parent = pl.DataFrame(
                schema={
                    "chunk": pl.UInt32,
                    "pos": pl.UInt32,
                    "h1": pl.UInt64,
                    "h2": pl.UInt64,
                    **{k: file.schema[k] for k in self.key},
                }
            )
        parent = parent.with_columns(prow=pl.int_range(pl.len(), dtype=pl.UInt64))
        joined = parent.join(
            file.rename({"h1": "fh1", "h2": "fh2"}), on=self.key, how="left", nulls_equal=False
        ).sort("prow")
        same = (pl.col("fh1") == pl.col("h1")) & (pl.col("fh2") == pl.col("h2"))
        # each output row: a stored row (chunk, pos) or a file row to store (frow)
        kept = joined.select(
            chunk=pl.when(pl.col("frow").is_null() | same).then(pl.col("chunk")),
            pos=pl.when(pl.col("frow").is_null() | same).then(pl.col("pos")),
            frow=pl.when(pl.col("frow").is_not_null() & ~same.fill_null(False)).then(
                pl.col("frow")
            ),
        )
        added = file.join(parent.select(self.key), on=self.key, how="anti").sort("frow")
        out = pl.concat(
            [
                kept.with_columns(pl.col("chunk").cast(pl.UInt64), pl.col("pos").cast(pl.UInt64)),
                added.select(
                    chunk=pl.lit(None, pl.UInt64), pos=pl.lit(None, pl.UInt64), frow="frow"
                ),
            ]
        )
        store = out.get_column("frow").is_not_null()
        k = store.cast(pl.UInt64).cum_sum() - 1
        base = len(parent_chunks)
        placed = out.select(
            chunk=pl.when(store)
            .then(pl.lit(base, pl.UInt64) + k // self.chunk_rows)
            .otherwise("chunk"),
            pos=pl.when(store).then(k % self.chunk_rows).otherwise("pos"),
        )
        order = out.filter(store).get_column("frow")
        ids = parent_chunks + self._write_rows(order)
        self.table_rows = out.height
        return _pieces(ids, _runs(placed))

    def _file_rows(self) -> pl.DataFrame:
        halves = _halves(pa.py_buffer(b"".join(self.hashes)), 0, self.rows)
        keys: pl.DataFrame | pl.Series
        if self.rows == 0:
            keys = pl.DataFrame(schema={k: pl.Utf8 for k in self.key})
        else:
            with pa.memory_map(str(self.spill_path)) as source:
                keys = pl.from_arrow(pa.ipc.open_file(source).read_all().select(self.key))
        assert isinstance(keys, pl.DataFrame)
        return pl.concat([keys, halves], how="horizontal").with_columns(
            frow=pl.int_range(pl.len(), dtype=pl.UInt64)
        )

    def _write_rows(self, order: pl.Series) -> list[str]:
        writer = self.make_chunk_writer()
        if len(order):
            with pa.memory_map(str(self.spill_path)) as source:
                table = pa.ipc.open_file(source).read_all()
                indices = order.to_arrow()
                for start in range(0, len(indices), self.chunk_rows):
                    writer.add(
                        table.take(indices.slice(start, self.chunk_rows))
                        .combine_chunks()
                        .to_batches()[0]
                    )
        self.spill_path.unlink(missing_ok=True)
        return [p.chunk for p in writer.finish()]


def _check_keys(file: pl.DataFrame, key: list[str]) -> None:
    nulls = file.filter(pl.any_horizontal(pl.col(key).is_null()))
    if nulls.height:
        row = int(nulls.get_column("frow")[0]) + 1
        raise ImportFailed(
            f"row {row} has no value for the primary key ({', '.join(key)})",
            code="null_key",
            row=row,
        )
    dup = file.filter(pl.struct(key).is_duplicated())
    if dup.height:
        first = dup.row(0, named=True)
        value = {k: first[k] for k in key}
        rows = [
            int(r) + 1
            for r in dup.filter(pl.all_horizontal([pl.col(k) == first[k] for k in key]))
            .get_column("frow")
            .to_list()
        ]
        raise ImportFailed(
            f"the file has the key {value} more than once (rows {', '.join(map(str, rows[:5]))}); "
            "an upsert needs each key once",
            code="duplicate_key",
            key=value,
            rows=rows[:20],
        )

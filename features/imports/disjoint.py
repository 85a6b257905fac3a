"""Whether a version's fresh rows equal none of the rows it leaves out of
the version it replaced (decision 0041).

A compare of two versions matches the rows they do not share as stored rows
by row hash (``features/compare/align.py``, rule 2), which reads the hashes
of every row group an edit touched: most of a big table's when 0.1 % of its
rows changed at random places. When no fresh row of the new version equals a
row the old one leaves out, that match finds nothing, and the import can
say so (``compare_service.remember_disjoint``).

The full path knows it for free (``dedup.DedupWriter`` matched every row
against every parent row). The line path does not: lines pair by their
bytes, and a line written another way ("1.50" for "1.5") can hold the row
an unpaired line of the old file held. So it checks: the fresh rows' hashes
(few) against the hashes of the rows left out, read chunk by chunk (only the
row groups that hold them) and dropped as it goes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from core.chunks import ROW_HASH_COLUMN, read_hashes, take_rows
from core.objects import Manifest
from core.storage import ObjectStore

# past this many fresh rows the check is not made (the compare matches by
# hash, as without it): their hashes are held while the old rows are read
MAX_FRESH = 4_000_000


def _left_out(manifest: Manifest, runs: pl.DataFrame) -> dict[int, np.ndarray]:
    """Chunk index → rows of that chunk the old version (``manifest``) uses
    more often than the new one (``runs``: chunk index, start, length;
    indexes past the old chunks are fresh rows)."""
    cols = manifest.columns
    n_old = len(cols.chunks)
    runs = runs.filter(pl.col("chunk") < n_old)
    chunk = np.concatenate([cols.chunk, runs.get_column("chunk").to_numpy()]).astype(np.int64)
    start = np.concatenate([cols.start, runs.get_column("start").to_numpy()]).astype(np.int64)
    length = np.concatenate([cols.length, runs.get_column("length").to_numpy()]).astype(np.int64)
    sign = np.r_[np.ones(len(cols.chunk), np.int64), -np.ones(runs.height, np.int64)]
    order = np.argsort(chunk, kind="stable")
    out: dict[int, np.ndarray] = {}
    bounds = np.flatnonzero(np.diff(chunk[order])) + 1
    for part in np.split(order, bounds):
        if not len(part):
            continue
        s, n, w = start[part], length[part], sign[part]
        size = int((s + n).max())
        diff = np.zeros(size + 1, np.int64)
        np.add.at(diff, s, w)
        np.add.at(diff, s + n, -w)
        count = np.cumsum(diff[:-1])
        rows = np.flatnonzero(count > 0)
        if len(rows):
            out[int(chunk[part[0]])] = rows
    return out


def fresh_rows_are_new(
    store: ObjectStore, manifest: Manifest, runs: pl.DataFrame, fresh_chunks: list[str]
) -> bool:
    """Whether no row of ``fresh_chunks`` (the new version's rows written
    afresh) has the hash of a row of ``manifest`` the new version (``runs``
    over the old chunks, then the fresh ones) leaves out."""
    if not fresh_chunks:
        return True
    left = _left_out(manifest, runs)
    if not left:
        return True
    parts = [read_hashes(store, c, keep=False) for c in fresh_chunks]
    if sum(len(p) for p in parts) > MAX_FRESH:
        return False
    fresh = _frame(np.concatenate(parts)).unique()
    del parts
    ids = manifest.columns.chunks

    def hit(c: int) -> bool:
        old = _frame(_hashes_at(store, ids[c], left[c]))
        return old.join(fresh, on=["h1", "h2"], how="semi").height > 0

    chunks = sorted(left)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="disjoint") as pool:
        for lo in range(0, len(chunks), 4):  # two read at once; the first hit stops it
            if any(pool.map(hit, chunks[lo : lo + 4])):
                return False
    return True


def _frame(h: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"h1": h[:, 0], "h2": h[:, 1]})


def _hashes_at(store: ObjectStore, cid: str, rows: np.ndarray) -> np.ndarray:
    """The row hashes of a chunk's ``rows`` (sorted, unique) as an (n, 2)
    uint64 array, decoding only the row groups that hold them."""
    col = take_rows(store, cid, rows, (ROW_HASH_COLUMN,)).column(0)
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    words = np.frombuffer(
        arr.buffers()[1], dtype=np.uint64, count=2 * len(arr), offset=arr.offset * 16
    )
    return words.reshape(-1, 2)

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
import structlog

from core.chunks import ROW_HASH_COLUMN, hash_words, read_hashes, take_rows
from core.objects import Manifest
from core.storage import ObjectStore

log = structlog.get_logger(__name__)

# past this many fresh rows, or rows left out, the check is not made (the
# compare matches by hash, as without it): the fresh rows' hashes are held
# while the old rows are read, the left-out rows' places all at once
MAX_FRESH = 4_000_000
MAX_LEFT_OUT = 8_000_000


def _left_out(manifest: Manifest, runs: pl.DataFrame) -> dict[int, np.ndarray] | None:
    """Chunk index → rows of that chunk the old version (``manifest``) uses
    more often than the new one (``runs``: chunk index, start, length;
    indexes past the old chunks are fresh rows); None past ``MAX_LEFT_OUT``
    of them."""
    cols = manifest.columns
    n_old = len(cols.chunks)
    runs = runs.filter(pl.col("chunk") < n_old)
    chunk = np.concatenate([cols.chunk, runs.get_column("chunk").to_numpy()]).astype(np.int64)
    start = np.concatenate([cols.start, runs.get_column("start").to_numpy()]).astype(np.int64)
    length = np.concatenate([cols.length, runs.get_column("length").to_numpy()]).astype(np.int64)
    sign = np.r_[np.ones(len(cols.chunk), np.int64), -np.ones(runs.height, np.int64)]
    order = np.argsort(chunk, kind="stable")
    out: dict[int, np.ndarray] = {}
    held = 0
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
        held += len(rows)
        if held > MAX_LEFT_OUT:
            return None
        if len(rows):
            out[int(chunk[part[0]])] = rows
    return out


def fresh_rows_are_new(
    store: ObjectStore,
    manifest: Manifest,
    runs: pl.DataFrame,
    fresh_chunks: list[str],
    fresh_rows: int,
) -> bool:
    """Whether no row of ``fresh_chunks`` (the new version's ``fresh_rows``
    rows written afresh) has the hash of a row of ``manifest`` the new
    version (``runs`` over the old chunks, then the fresh ones) leaves out.
    False when the check is too big to make or cannot be made: the claim is
    an optional shortcut for compare, never a reason to fail an import."""
    if not fresh_chunks or not fresh_rows:
        return True
    if fresh_rows > MAX_FRESH:
        return False
    try:
        return _check(store, manifest, runs, fresh_chunks)
    except Exception:  # noqa: BLE001 - unreadable chunk, store down: no claim
        log.warning("could not check that the fresh rows are new", exc_info=True)
        return False


def _check(
    store: ObjectStore, manifest: Manifest, runs: pl.DataFrame, fresh_chunks: list[str]
) -> bool:
    left = _left_out(manifest, runs)
    if left is None:
        return False
    if not left:
        return True
    parts = [read_hashes(store, c, keep=False) for c in fresh_chunks]
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
    return hash_words(take_rows(store, cid, rows, (ROW_HASH_COLUMN,)).column(0))

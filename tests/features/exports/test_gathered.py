"""A fragmented version's CSV windows gathered by polars (``gathered.frames``)
hold exactly the rows ``core.scan`` reads, in the same order and types,
whatever the pieces: few-row pieces of several chunks, pieces of one chunk
from all over it (read by ``core.scan``), filtered and projected."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import polars as pl
import pytest

from core.chunks import read_rows
from core.config import get_settings
from core.errors import StoredObjectError
from core.objects import Manifest, get_commit, get_manifest
from core.scan import Window
from core.storage import LocalStore, get_store
from features.exports import gathered, rows
from tests.features.exports.stored import ROWS, export_of


def _fragmented(big: dict[str, Any], layout: str) -> Manifest:
    """The stored table's rows cut into pieces of 1–300 rows, put in a new
    order (``cut``: none): ``edits`` keeps the order but takes every 7th piece from
    elsewhere (a re-upload's changed rows); ``within`` reverses each chunk's
    pieces (windows of one chunk and many pieces); ``shuffled`` shuffles
    them all."""
    store = get_store()
    entry = next(iter(get_commit(store, big["commit"]).tables.values()))
    cols = get_manifest(store, entry.manifest).columns
    rng = random.Random(7)
    chunk, start, length = [], [], []
    for p in range(len(cols.chunk)):
        at, end = int(cols.start[p]), int(cols.start[p] + cols.length[p])
        cut = []
        while at < end:
            n = min(rng.randint(1, 300), end - at)
            cut.append((int(cols.chunk[p]), at, n))
            at += n
        for c, s, n in reversed(cut) if layout == "within" else cut:
            chunk.append(c)
            start.append(s)
            length.append(n)
    order = list(range(len(chunk)))
    if layout == "shuffled":
        rng.shuffle(order)
    elif layout == "edits":  # ("cut": the pieces in order)
        for i in range(0, len(order) - 7, 7):
            j = rng.randrange(len(order))
            order[i], order[j] = order[j], order[i]
    pick = np.asarray(order)
    return Manifest.from_columns(
        cols.chunks, np.asarray(chunk)[pick], np.asarray(start)[pick], np.asarray(length)[pick]
    )


@pytest.mark.parametrize("layout", ["edits", "within", "shuffled"])
@pytest.mark.parametrize(
    "options",
    [{}, {"columns": ["at_tz", "name", "blob"], "filter": "name contains '7' and price > 100"}],
    ids=["all", "filter-columns"],
)
@pytest.mark.parametrize("max_chunks", [16, 1], ids=["gathered", "one-chunk"])
@pytest.mark.parametrize("window_rows", [None, 2048, 200])
def test_gathered_windows_are_the_scans_rows(
    big: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    layout: str,
    options: dict[str, Any],
    max_chunks: int,
    window_rows: int | None,
) -> None:
    monkeypatch.setattr(gathered, "MAX_CHUNKS", max_chunks)
    if window_rows:
        monkeypatch.setattr(get_settings(), "export_batch_rows", window_rows)
    stretches: list[int] = []  # the stretches of each window gathered
    real = gathered._gathered

    def spy(*args: Any) -> pl.DataFrame:
        stretches.append(len(args[2].chunk))
        return real(*args)

    monkeypatch.setattr(gathered, "_gathered", spy)
    manifest = _fragmented(big, layout)
    ex = export_of(big, **options)
    src = rows.Source(manifest, rows.source(get_store(), ex).key)
    assert manifest.row_count == ROWS
    got = list(gathered.frames(get_store(), ex, src, offset=0, limit=ROWS))
    scanned = list(rows.windows(get_store(), ex, src))
    assert [(w.lo, w.hi) for w, _ in got] == [(w.lo, w.hi) for w, _ in scanned]
    joined = pl.concat([f for _, f in got])
    expected = pl.concat([cast(pl.DataFrame, pl.from_arrow(t)) for _, t in scanned])
    assert joined.schema == expected.schema
    assert joined.equals(expected)
    # gathered where a window's stretches stay near its rows, else scanned
    assert all(n <= max_chunks for n in stretches)
    if layout == "edits" and max_chunks > 1:
        assert max(stretches) > 1  # several chunks' stretches joined
    if layout == "within" and window_rows == 200:
        assert 1 in stretches  # one chunk's stretch, many pieces gathered from it
    if layout == "shuffled" and window_rows is None:
        assert len(stretches) < len(got)  # a window of pieces from all over its chunks
    if not options:  # the ids are the stored rows' numbers: the pieces' rows in order
        cols = manifest.columns
        base = [_first_id(cid) for cid in cols.chunks]
        want = np.concatenate(
            [
                np.arange(base[c] + s, base[c] + s + n)
                for c, s, n in zip(cols.chunk, cols.start, cols.length, strict=True)
            ]
        )
        assert joined["id"].to_numpy().tolist() == want.tolist()


@pytest.mark.parametrize(("offset", "limit"), [(137, 20_000), (29_000, 999), (5, 1)])
def test_windows_cut_inside_pieces(big: dict[str, Any], offset: int, limit: int) -> None:
    """Rows from inside a piece to inside another: the same as the scan's."""
    manifest = _fragmented(big, "edits")
    ex = export_of(big)
    src = rows.Source(manifest, rows.source(get_store(), ex).key)
    store = get_store()
    got = pl.concat([f for _, f in gathered.frames(store, ex, src, offset=offset, limit=limit)])
    scanned = rows.windows(store, ex, src, offset=offset, limit=limit)
    want = pl.concat([cast(pl.DataFrame, pl.from_arrow(t)) for _, t in scanned])
    assert got.height == limit
    assert got.equals(want)


def test_a_block_read_once_serves_the_windows_after_it(
    big: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk's block (at least ``BLOCK_ROWS`` rows) is read once and
    sliced for each window after it that stays within it."""
    monkeypatch.setattr(get_settings(), "export_batch_rows", 200)
    monkeypatch.setattr(gathered, "BLOCK_ROWS", 1000)
    reads: list[tuple[str, int, int]] = []
    real = gathered._read

    def spy(store: Any, key: str, lo: int, hi: int, cols: list[str]) -> pl.DataFrame:
        reads.append((key, lo, hi))
        return real(store, key, lo, hi, cols)

    monkeypatch.setattr(gathered, "_read", spy)
    manifest = _fragmented(big, "cut")
    ex = export_of(big)
    src = rows.Source(manifest, rows.source(get_store(), ex).key)
    got = pl.concat([f for _, f in gathered.frames(get_store(), ex, src, offset=0, limit=ROWS)])
    scanned = rows.windows(get_store(), ex, src)
    assert got.equals(pl.concat([cast(pl.DataFrame, pl.from_arrow(t)) for _, t in scanned]))
    # 150 windows of 200 rows over 30 chunks of 1,000: a block or two a chunk
    assert len(reads) <= 2 * len(manifest.columns.chunks)
    assert all(hi - lo >= 1000 for _, lo, hi in reads)


def test_a_damaged_chunk_is_reported_as_one(tmp_path: Path) -> None:
    """polars' error on a chunk that is not Parquet is the store's usual
    problem (run dsa fsck), and a path with pattern characters is a path."""
    store = LocalStore(tmp_path / "objects [1]")
    store.put("chunks/" + "ab" * 32, b"not parquet at all")
    buf = io.BytesIO()
    pl.DataFrame({"id": [1, 2, 3]}).write_parquet(buf)
    store.put("chunks/" + "cd" * 32, buf.getvalue())
    with pytest.raises(StoredObjectError, match="run dsa fsck"):
        gathered._read(store, "chunks/" + "ab" * 32, 0, 1, ["id"])
    assert gathered._read(store, "chunks/" + "cd" * 32, 1, 3, ["id"])["id"].to_list() == [2, 3]


def _first_id(cid: str) -> int:
    """The id of a chunk's first row (the stored rows' ids are their numbers)."""
    return int(read_rows(get_store(), cid, 0, 1, ("id",)).column(0)[0].as_py())


def test_stretches_far_larger_than_the_window_are_left_to_the_scan() -> None:
    """Pieces of one chunk from its first and last rows: the stretch between
    them would hold ~5,000 times the window's rows, so none is read by polars."""
    w = Window(
        0,
        20,
        np.array([0, 1, 0]),
        np.array([0, 5, 100_000]),
        np.array([10, 5, 5]),
    )
    assert gathered._stretches(w, 128) is None
    near = Window(0, 20, np.array([0, 1, 0]), np.array([0, 5, 10]), np.array([10, 5, 5]))
    got = gathered._stretches(near, 128)
    assert got is not None
    assert (got.chunk, got.lo, got.hi) == ([0, 1], [0, 5], [15, 10])
    assert got.slot.tolist() == [0, 1, 0]

"""The external match (``matching.Pairing``) against the in-memory one it
stands in for past ``EXTERNAL_ROWS``: the same unmatched rows and the same
runs, whatever the duplicates, groups and ranges."""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.chunks import chunk_key
from core.config import get_settings
from core.objects import Manifest
from core.schema import Column, arrow_schema
from core.storage import LocalStore
from features.imports import dedup, lines, matching
from features.imports.chunking import ChunkWriter
from features.imports.dedup import DedupWriter, place, positions
from features.imports.matching import Pairing, match, table_slices


def _hashes(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    return pool[rng.integers(0, len(pool), n)]


def _frame(h: np.ndarray, **payload: np.ndarray) -> pl.DataFrame:
    return pl.DataFrame({"h1": h[:, 0], "h2": h[:, 1], **payload})


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    new_rows=st.integers(0, 3000),
    old_rows=st.integers(0, 3000),
    distinct=st.integers(1, 4000),
    group=st.sampled_from([1, 50, 700, 10_000]),
    span=st.sampled_from([1, 64, 999, 10_000]),
)
def test_external_match_places_rows_as_in_memory(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    new_rows: int,
    old_rows: int,
    distinct: int,
    group: int,
    span: int,
) -> None:
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 2**63, (distinct, 2), dtype=np.uint64)
    pool[:, 0] |= rng.integers(0, 256, distinct, dtype=np.uint64) << np.uint64(56)
    new, old = _hashes(rng, pool, new_rows), _hashes(rng, pool, old_rows)
    chunk = (np.arange(old_rows) // 97).astype(np.uint32)
    pos = (np.arange(old_rows) % 97).astype(np.uint32)
    expected = place(match(_frame(new), _frame(old, chunk=chunk, pos=pos)), 40, 128)

    mp = pytest.MonkeyPatch()
    mp.setattr(matching, "GROUP_ROWS", group)
    mp.setattr(matching, "RANGE_ROWS", span)
    pairing = Pairing(tmp_path_factory.mktemp("m"), "t")
    try:
        for lo in range(0, max(new_rows, old_rows), 701):  # batches, sides interleaved
            part = new[lo : lo + 701]
            pairing.add_new(part[:, 0], part[:, 1])
            o = slice(lo, lo + 701)
            pairing.add_old(old[o, 0], old[o, 1], chunk[o], pos[o])
        got = pairing.place(40, 128, max_runs=10**9)
    finally:
        mp.undo()
        pairing.close()
    assert got is not None
    assert got[0].to_list() == expected[0].to_list()
    assert got[1].rows() == expected[1].rows()
    assert not pairing.dir.exists()


def test_too_many_runs_stop_the_external_match(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    h = rng.integers(0, 2**63, (5000, 2), dtype=np.uint64)
    pairing = Pairing(tmp_path, "t")
    pairing.add_new(h[:, 0], h[:, 1])
    back = h[::-1]  # every row paired, each with a row away from its neighbours
    pairing.add_old(
        back[:, 0], back[:, 1], np.zeros(5000, np.uint32), np.arange(5000, dtype=np.uint32)
    )
    assert pairing.place(1, 128, max_runs=1000) is None


def test_table_slices_list_the_rows_of_the_pieces_in_order() -> None:
    rng = np.random.default_rng(3)
    n = 4000
    ids = [f"{i:064x}" for i in range(9)]
    chunk = rng.integers(0, 9, n)
    start = rng.integers(0, 5000, n)
    length = rng.integers(1, 900, n)
    manifest = Manifest.from_columns(ids, chunk, start, length)
    mp = pytest.MonkeyPatch()
    mp.setattr(matching, "SLICE_ROWS", 10_000)
    try:
        parts = list(table_slices(manifest))
    finally:
        mp.undo()
    _, rows = positions(manifest)
    assert [p[0] for p in parts] == np.cumsum([0] + [len(p[1]) for p in parts[:-1]]).tolist()
    assert np.concatenate([p[1] for p in parts]).tolist() == rows.get_column("chunk").to_list()
    assert np.concatenate([p[2] for p in parts]).tolist() == rows.get_column("pos").to_list()


# -- the dedup writer, both ways --------------------------------------------------------

COLUMNS = [Column("id", "integer"), Column("name", "string")]


def _batch(ids: list[int]) -> pa.RecordBatch:
    names = [None if i % 11 == 0 else f"n{i % 97}" for i in ids]
    return pa.RecordBatch.from_arrays(
        [pa.array(ids, pa.int64()), pa.array(names, pa.large_string())],
        schema=arrow_schema(COLUMNS),
    )


def _version(store: LocalStore, work: Path, ids: list[int], parent: Manifest | None) -> Manifest:
    work.mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:

        def fresh() -> ChunkWriter:
            return ChunkWriter(store, COLUMNS, work, pool)

        writer = (
            fresh()
            if parent is None
            else DedupWriter(store, COLUMNS, work, pool, parent, get_settings().chunk_rows, fresh)
        )
        for lo in range(0, len(ids), 700):
            writer.add(_batch(ids[lo : lo + 700]))
        return Manifest.of(writer.finish())


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DSA_CHUNK_ROWS", "1000")
    monkeypatch.setenv("DSA_ROW_GROUP_ROWS", "64")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.mark.parametrize("external", ["parent", "file", "both"])
def test_a_version_matched_on_disk_is_the_one_matched_in_memory(
    tmp_path: Path, small_chunks: None, monkeypatch: pytest.MonkeyPatch, external: str
) -> None:
    """A re-upload with rows edited, inserted, deleted, moved and repeated:
    the same manifest (so the same chunks and commit) whichever side is
    past ``EXTERNAL_ROWS``; and the rows are the file's."""
    rng = random.Random(7)
    base = list(range(6000))
    edited = [i + 100_000 if rng.random() < 0.01 else i for i in base]
    del edited[1200:1300]
    edited[4000:4000] = list(range(200_000, 200_250)) + base[10:60] + base[10:60]
    edited += edited[:500]  # moved copies of rows the parent has
    store = LocalStore(tmp_path / "objects")
    parent = _version(store, tmp_path / "w0", base, None)
    in_memory = _version(store, tmp_path / "w1", edited, parent)

    limit = {"parent": 5000, "file": 6500, "both": 3000}[external]
    monkeypatch.setattr(dedup, "EXTERNAL_ROWS", limit)
    spilled: list[Path] = []
    real = matching.Pairing.place
    monkeypatch.setattr(
        matching.Pairing, "place", lambda self, *a: spilled.append(self.dir) or real(self, *a)
    )
    on_disk = _version(store, tmp_path / "w2", edited, parent)
    assert spilled and not spilled[0].exists()
    assert on_disk.id == in_memory.id
    got = [
        i
        for p in on_disk.pieces
        for i in pq.read_table(store.open_arrow(chunk_key(p.chunk)), columns=["id"])
        .column(0)
        .to_pylist()[p.start : p.start + p.length]
    ]
    assert got == edited
    assert len(on_disk.pieces) < 300  # runs, not rows


def test_lines_are_placed_on_disk_as_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(5)
    old = rng.integers(0, 2**64 - 1, (5000, 2), dtype=np.uint64)
    new = np.concatenate([old[:3000], old[2900:3100], rng.integers(0, 2**63, (40, 2), np.uint64)])
    ids = [f"{i:064x}" for i in range(3)]
    manifest = Manifest.from_columns(ids, [0, 1, 2, 0], [0, 0, 0, 2000], [2000, 1000, 1000, 1000])
    files = tmp_path / "hashes"
    files.mkdir()
    (files / "new").write_bytes(new.tobytes())
    (files / "old").write_bytes(b"head" + old.tobytes())
    new_file = lines.Records(files / "new", 0, len(new))
    old_file = lines.Records(files / "old", 4, len(old))
    work = tmp_path / "work"
    work.mkdir()
    in_memory = lines._place(new_file, old_file, manifest, 1000, work)
    monkeypatch.setattr(lines, "EXTERNAL_ROWS", 1000)
    monkeypatch.setattr(lines, "SLICE_ROWS", 700)  # slices that cut pieces and files
    on_disk = lines._place(new_file, old_file, manifest, 1000, work)
    assert in_memory is not None and on_disk is not None
    assert on_disk[0].to_list() == in_memory[0].to_list()
    assert on_disk[1].rows() == in_memory[1].rows()
    assert list(work.iterdir()) == []


def test_an_empty_file_against_a_big_parent_leaves_nothing_behind(
    tmp_path: Path, small_chunks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Review of issue 19: a file of no rows whose parent was being spilled
    stops the spill and removes it (it went on to the end, and stayed)."""
    store = LocalStore(tmp_path / "objects")
    parent = _version(store, tmp_path / "w0", list(range(6000)), None)
    monkeypatch.setattr(dedup, "EXTERNAL_ROWS", 1000)
    work = tmp_path / "w1"
    work.mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:
        writer = DedupWriter(
            store,
            COLUMNS,
            work,
            pool,
            parent,
            get_settings().chunk_rows,
            lambda: ChunkWriter(store, COLUMNS, work, pool),
        )
        writer.add(_batch([]))
        assert writer.finish() == []
    assert [p.name for p in work.iterdir()] == []

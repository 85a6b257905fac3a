"""The import's chunk writer keeps each chunk's statistics state, its text
columns' extremes taken from the statistics of the Parquet file it wrote;
with ``DSA_CHUNK_STATS=false`` it keeps none (a state is made when needed)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.chunks import chunk_key
from core.config import get_settings
from core.schema import Column, arrow_schema
from core.storage import LocalStore
from features.imports.chunking import ChunkWriter
from features.stats import pieces, state

COLUMNS = [Column("id", "integer"), Column("name", "string")]


def _write(tmp_path: Path, rows: int) -> tuple[LocalStore, list[str]]:
    store = LocalStore(tmp_path / "objects")
    names = [None if i % 5 == 0 else f"n{(i * 7919) % 1000:03d}é" for i in range(rows)]
    batch = pa.RecordBatch.from_arrays(
        [pa.array(range(rows), pa.int64()), pa.array(names, pa.large_string())],
        schema=arrow_schema(COLUMNS),
    )
    with ThreadPoolExecutor(max_workers=2) as pool:
        writer = ChunkWriter(store, COLUMNS, tmp_path / "work", pool)
        writer.add(batch)
        return store, [p.chunk for p in writer.finish()]


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.setenv("DSA_CHUNK_ROWS", "1000")
    monkeypatch.setenv("DSA_ROW_GROUP_ROWS", "64")
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_each_chunk_gets_a_state_whose_text_extremes_came_from_its_file(
    tmp_path: Path, settings: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    given: list[dict[str, tuple[str, str]] | None] = []
    real = state.chunk_state
    monkeypatch.setattr(state, "chunk_state", lambda *a: given.append(a[3]) or real(*a))
    store, chunks = _write(tmp_path, 2500)
    assert len(chunks) == 3 and len(given) == 3
    assert all(g is not None and set(g) == {"name"} for g in given)
    for cid in chunks:
        kept = state.load(store.get(pieces.state_key(cid)), COLUMNS, cid)
        assert kept is not None
        made = real(cid, _rows(store, cid), COLUMNS)  # every extreme computed from the rows
        assert [(a.min, a.max) for a in kept.columns] == [(a.min, a.max) for a in made.columns]


def test_no_state_is_kept_when_chunk_stats_are_off(
    tmp_path: Path, settings: pytest.MonkeyPatch
) -> None:
    settings.setenv("DSA_CHUNK_STATS", "false")
    get_settings.cache_clear()
    store, chunks = _write(tmp_path, 1500)
    assert chunks and not any(store.exists(pieces.state_key(c)) for c in chunks)


def _rows(store: LocalStore, cid: str) -> pa.Table:
    with store.local_path(chunk_key(cid)) as path:
        return pq.read_table(path, columns=[c.name for c in COLUMNS])

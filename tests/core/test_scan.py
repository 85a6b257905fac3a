"""Reading a manifest chunk by chunk (core.scan) gives exactly the rows that
reading it piece by piece gives, in order, for any layout: pieces of any
length, in any order, interleaving chunks, repeated, empty, spanning row
groups; any window size, first window, offset and limit; windows cut where
they would decode too many row groups."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import scan as scan_module
from core.chunks import read_rows, write_chunk
from core.config import get_settings
from core.objects import Manifest, Piece
from core.scan import Scan
from core.schema import Column, arrow_schema
from core.storage import LocalStore

COLUMNS = [Column("id", "integer"), Column("name", "string"), Column("x", "float")]
SIZES = [50, 200, 37, 130, 1]  # rows of each chunk; row groups of 16 rows
NAMES = ("id", "name", "x")


@pytest.fixture(scope="module")
def chunks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStore, list[str]]]:
    mp = pytest.MonkeyPatch()
    mp.setenv("DSA_ROW_GROUP_ROWS", "16")
    get_settings.cache_clear()
    try:
        root: Path = tmp_path_factory.mktemp("scan")
        store = LocalStore(root / "objects")
        ids, first = [], 0
        for k, n in enumerate(SIZES):
            table = pa.table(
                {
                    "id": pa.array(range(first, first + n), pa.int64()),
                    "name": pa.array(
                        [None if i % 7 == 0 else f"c{k}-r{i}" for i in range(n)], pa.large_string()
                    ),
                    "x": pa.array([i / 4 if i % 5 else None for i in range(n)], pa.float64()),
                },
                schema=arrow_schema(COLUMNS),
            )
            cid, _ = write_chunk(store, table, COLUMNS, tmp_dir=root / "tmp")
            ids.append(cid)
            first += n
        yield store, ids
    finally:
        mp.undo()
        get_settings.cache_clear()


pieces = st.lists(
    st.integers(0, len(SIZES) - 1).flatmap(
        lambda k: st.tuples(st.just(k), st.integers(0, SIZES[k])).flatmap(
            lambda ks: st.tuples(
                st.just(ks[0]), st.just(ks[1]), st.integers(0, SIZES[ks[0]] - ks[1])
            )
        )
    ),
    min_size=1,
    max_size=60,
)


def _manifest(ids: list[str], ps: list[tuple[int, int, int]]) -> Manifest:
    return Manifest.from_columns(
        ids, [k for k, _, _ in ps], [s for _, s, _ in ps], [n for _, _, n in ps]
    )


def _by_pieces(
    store: LocalStore, m: Manifest, offset: int, limit: int, cols: tuple[str, ...]
) -> pa.Table:
    parts = [read_rows(store, c, s, n, cols) for c, s, n in m.slices(offset, limit)]
    schema = arrow_schema([c for c in COLUMNS if c.name in cols])
    if not parts:
        return schema.empty_table()
    return pa.concat_tables([p.select(list(cols)) for p in parts]).cast(
        pa.schema([schema.field(c) for c in cols])
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ps=pieces,
    batch=st.integers(1, 120),
    first=st.one_of(st.none(), st.integers(1, 40)),
    offset=st.integers(0, 300),
    limit=st.one_of(st.none(), st.integers(0, 400)),
    cols=st.sampled_from([NAMES, ("name",), ("x", "id")]),
    max_groups=st.sampled_from([1, 3, 128]),
)
def test_scan_equals_reading_piece_by_piece(
    chunks: tuple[LocalStore, list[str]],
    ps: list[tuple[int, int, int]],
    batch: int,
    first: int | None,
    offset: int,
    limit: int | None,
    cols: tuple[str, ...],
    max_groups: int,
) -> None:
    store, ids = chunks
    m = _manifest(ids, ps)
    total = m.row_count
    want = _by_pieces(store, m, offset, (total if limit is None else limit), cols)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scan_module, "MAX_WINDOW_GROUPS", max_groups)
        s = Scan(store, m, cols, offset=offset, limit=limit, batch_rows=batch, first_rows=first)
        got = list(s)
    sizes = [t.num_rows for t in got]
    assert sum(sizes) == want.num_rows
    if got:
        assert pa.concat_tables(got).equals(want)
    if max_groups == 128:  # windows are exactly the asked size (the first and last aside)
        assert all(n == batch for n in sizes[1:-1])
        if len(sizes) > 1:
            assert sizes[0] == (first or batch)


def test_each_row_group_is_decoded_once_when_pieces_keep_their_order(
    chunks: tuple[LocalStore, list[str]],
) -> None:
    """A re-upload's layout: each chunk's rows used in ascending order, the
    chunks' pieces interleaved (short runs of 1-3 rows)."""
    store, ids = chunks
    ps, next_row = [], {0: 0, 1: 0, 3: 0}
    k = 0
    while any(next_row[c] < SIZES[c] for c in next_row):
        c = (0, 1, 3)[k % 3]
        k += 1
        n = min(1 + k % 3, SIZES[c] - next_row[c])
        if n > 0:
            ps.append((c, next_row[c], n))
            next_row[c] += n
    m = _manifest(ids, ps)
    s = Scan(store, m, NAMES, batch_rows=32)
    got = pa.concat_tables(list(s))
    assert got.equals(_by_pieces(store, m, 0, m.row_count, NAMES))
    groups = sum(-(-SIZES[c] // 16) for c in (0, 1, 3))
    assert s.groups_read == groups  # every row group of the three chunks, each once


def test_chunks_that_disagree_on_nullability_read_together(
    chunks: tuple[LocalStore, list[str]], tmp_path: Path
) -> None:
    """A merge writes its rows with the table's columns (``x`` not null),
    imports write every column nullable: a window over both chunks reads, and
    as the scan's schema says."""
    store, ids = chunks
    strict = [Column("id", "integer", False), Column("name", "string"), Column("x", "float", False)]
    table = pa.table(
        {"id": [10_000, 10_001], "name": ["m", None], "x": [0.5, 1.5]}, schema=arrow_schema(strict)
    )
    merged, _ = write_chunk(store, table, strict, tmp_dir=tmp_path)
    m = _manifest([*ids, merged], [(0, 0, 20), (len(ids), 0, 2), (0, 20, 30)])
    schema = pa.schema([f.with_nullable(True) for f in arrow_schema(COLUMNS)])
    got = pa.concat_tables(list(Scan(store, m, NAMES, schema=schema, batch_rows=64)))
    assert got.schema == schema
    assert got.column("id").to_pylist() == [*range(20), 10_000, 10_001, *range(20, 50)]


def test_the_bytes_a_window_reads_are_asked_for_first(
    chunks: tuple[LocalStore, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before a window is read, the store is told which bytes of each chunk
    it reads (the kernel reads them ahead in large requests: a mapped
    file's reads fault pages in one by one): the column chunks of the
    columns read in the row groups read, and none of the others, all told
    before the first read."""
    store, ids = chunks
    events: list[tuple[str, str, int, int]] = []
    monkeypatch.setattr(store, "will_read", lambda k, s, n: events.append(("hint", k, s, n)))
    real = scan_module._Chunk.read

    def read(self: scan_module._Chunk, groups: list[int]) -> list[pa.Table]:
        events.append(("read", self.key, groups[0], groups[-1]))
        return real(self, groups)

    monkeypatch.setattr(scan_module._Chunk, "read", read)
    manifest = Manifest.of([Piece(ids[1], 10, 60), Piece(ids[3], 0, 40), Piece(ids[1], 100, 20)])
    scan = Scan(store, manifest, ["id", "x"], batch_rows=1000)
    assert sum(t.num_rows for t in scan) == 120
    kinds = [e[0] for e in events]
    assert kinds == ["hint"] * kinds.count("hint") + ["read"] * kinds.count("read")
    hinted: dict[str, set[int]] = {}
    for _, key, start, length in (e for e in events if e[0] == "hint"):
        hinted.setdefault(key, set()).update(range(start, start + length))
    groups_read: dict[str, set[int]] = {}
    for _, key, first, last in (e for e in events if e[0] == "read"):
        groups_read.setdefault(key, set()).update(range(first, last + 1))
    assert set(hinted) == set(groups_read)
    for key, read_groups in groups_read.items():
        with store.open_arrow(key) as f:
            meta = pq.ParquetFile(f).metadata
        for g in range(meta.num_row_groups):
            for j in range(meta.num_columns):
                col = meta.row_group(g).column(j)
                at = col.dictionary_page_offset or col.data_page_offset
                told = set(range(at, at + col.total_compressed_size)) <= hinted[key]
                wanted = g in read_groups and col.path_in_schema in ("id", "x")
                assert told == wanted, (key, g, col.path_in_schema)


def test_a_hint_for_a_missing_object_is_ignored(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    store.will_read("chunks/absent", 0, 100)  # the read reports it, not the hint
    store.put("chunks/here", b"x" * 10)
    store.will_read("chunks/here", 0, 1 << 20)  # past the end: harmless

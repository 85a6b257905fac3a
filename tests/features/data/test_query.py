"""Filtered and sorted positions over piece tables, against an oracle: the
table materialised from the chunks' source rows in manifest order, filtered
and sorted by polars eagerly. Manifests use parts of chunks, skip rows and
repeat rows, and chunks have tiny row groups so reads cross them."""

from __future__ import annotations

import decimal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.chunks import chunk_key, write_chunk
from core.config import get_settings
from core.objects import Manifest, Piece, Schema
from core.schema import Column, arrow_schema
from core.storage import LocalStore
from features.data import query, zones
from features.data import service as data_service

COLUMNS = [
    Column("n", "integer"),
    Column("s", "string"),
    Column("f", "float"),
]
SCHEMA = Schema(tuple(COLUMNS))


def _chunk_rows(seed: int, n: int, far: bool = False) -> pa.Table:
    """Rows of small values; ``far``: of values no other chunk has (n ≥ 10,
    words from 'x'), so a chunk's extremes can rule it out."""
    rnd = np.random.default_rng(seed)
    ints = rnd.integers(0, 6, n) + (10 if far else 0)
    words = np.array(["x", "xb", "y", "z", "zz"] if far else ["a", "b", "ab", "ba", "c"])[
        rnd.integers(0, 5, n)
    ]
    floats = rnd.integers(-3, 4, n) / 2
    mask = rnd.random(n) < 0.15
    return pa.table(
        {
            "n": pa.array([None if m else int(v) for v, m in zip(ints, mask, strict=True)]),
            "s": pa.array(
                [
                    None if m and i % 2 else str(w)
                    for i, (w, m) in enumerate(zip(words, mask, strict=True))
                ]
            ),
            "f": pa.array([float(v) for v in floats]),
        },
        schema=arrow_schema(COLUMNS),
    )


@pytest.fixture(scope="module")
def chunks() -> Iterator[tuple[LocalStore, list[tuple[str, pa.Table]]]]:
    s = get_settings()
    old = s.row_group_rows
    s.row_group_rows = 7
    with tempfile.TemporaryDirectory() as d:
        store = LocalStore(Path(d) / "objects")
        out = []
        for seed, n, far in [(1, 40, False), (2, 25, False), (3, 60, False), (4, 30, True)]:
            t = _chunk_rows(seed, n, far)
            cid, _ = write_chunk(store, t, COLUMNS, tmp_dir=Path(d) / "tmp")
            out.append((cid, t))
        s.row_group_rows = old
        yield store, out


@st.composite
def manifests(draw: Any, sizes: list[int]) -> list[tuple[int, int, int]]:
    pieces = []
    for _ in range(draw(st.integers(0, 8))):
        k = draw(st.integers(0, len(sizes) - 1))
        start = draw(st.integers(0, sizes[k] - 1))
        length = draw(st.integers(1, sizes[k] - start))
        pieces.append((k, start, length))
    return pieces


def _leaf() -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(
            lambda op, v: f"n {op} {v}",
            st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
            # values an integer column cannot hold exactly too: never rounded
            st.one_of(st.integers(-1, 16), st.sampled_from(["1.5", "-0.5", "9.5", "1e30"])),
        ),
        st.builds(
            lambda op, v: f"f {op} {v}",
            st.sampled_from(["=", "<", ">="]),
            st.sampled_from(["-1.5", "0", "0.5", "1"]),
        ),
        st.builds(
            lambda op, v: f"s {op} '{v}'",
            st.sampled_from(["=", "!=", "<", "<=", ">", ">="]),
            st.sampled_from(["a", "ab", "b", "x", "y", "z"]),
        ),
        st.builds(
            lambda c, neg: f"{c} is {'not ' if neg else ''}null",
            st.sampled_from(["n", "s"]),
            st.booleans(),
        ),
        st.builds(
            lambda op, v: f"s {op} '{v}'",
            st.sampled_from(["contains", "starts_with"]),
            st.sampled_from(["a", "b", "ba"]),
        ),
        st.builds(
            lambda vs, neg: f"n {'not ' if neg else ''}in ({', '.join(map(str, vs))})",
            st.lists(st.integers(0, 6), min_size=1, max_size=3),
            st.booleans(),
        ),
    )


FILTERS = st.recursive(
    _leaf(),
    lambda inner: st.one_of(
        st.builds(
            lambda a, op, b: f"({a}) {op} ({b})", inner, st.sampled_from(["and", "or"]), inner
        ),
        st.builds(lambda a: f"not ({a})", inner),
    ),
    max_leaves=5,
)
SORTS = st.one_of(
    st.just(""),
    st.lists(st.sampled_from(["n", "s", "f"]), min_size=1, max_size=3, unique=True)
    .flatmap(lambda names: st.tuples(*(st.sampled_from([n, f"-{n}", f"{n}:desc"]) for n in names)))
    .map(",".join),
)


def _oracle(table: pl.DataFrame, where: str, sort: str) -> list[int]:
    frame = table.with_row_index("pos")
    if where:
        frame = frame.filter(data_service.parse_filter(where, SCHEMA))
    if sort:
        order = data_service.parse_sort(sort, SCHEMA)
        # the documented order: nulls last either way, ties by table position
        frame = frame.sort(
            [n for n, _ in order] + ["pos"],
            descending=[d for _, d in order] + [False],
            nulls_last=True,
        )
    return frame.get_column("pos").to_list()  # type: ignore[no-any-return]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), where=st.one_of(st.just(""), FILTERS), sort=SORTS)
def test_positions_match_filtering_the_table(
    chunks: tuple[LocalStore, list[tuple[str, pa.Table]]], data: Any, where: str, sort: str
) -> None:
    store, made = chunks
    spec = data.draw(manifests([t.num_rows for _, t in made]))
    manifest = Manifest(tuple(Piece(made[k][0], s, n) for k, s, n in spec))
    parts = [made[k][1].slice(s, n) for k, s, n in spec]
    table = (
        pl.from_arrow(pa.concat_tables(parts))
        if parts
        else pl.DataFrame(schema={"n": pl.Int64, "s": pl.String, "f": pl.Float64})
    )
    assert isinstance(table, pl.DataFrame)
    expected = _oracle(table, where, sort)
    if not where and not sort:
        return
    query.clear_cache()
    got = query.positions(
        store,
        manifest,
        SCHEMA,
        where=data_service.parse_filter(where, SCHEMA) if where else None,
        order=data_service.parse_sort(sort, SCHEMA) if sort else [],
        key=(where, sort),
    )
    assert got[:].tolist() == expected and len(got) == len(expected)
    # any page of them (the lazy matches of a filter find the pieces holding it)
    offset = data.draw(st.integers(0, len(expected) + 2))
    limit = data.draw(st.integers(0, 9))
    assert got[offset : offset + limit].tolist() == expected[offset : offset + limit]
    # and the rows at those positions are the table's rows there
    if len(got):
        rows = query.read_positions(store, manifest, ("s", "n"), got[:50])
        assert rows.to_pylist() == table.select("s", "n")[got[:50].tolist()].to_dicts()


def test_positions_are_cached_per_query(
    chunks: tuple[LocalStore, list[tuple[str, pa.Table]]],
) -> None:
    store, made = chunks
    manifest = Manifest(tuple(Piece(cid, 0, t.num_rows) for cid, t in made))
    where = data_service.parse_filter("n = 1", SCHEMA)
    query.clear_cache()
    a = query.positions(store, manifest, SCHEMA, where=where, order=[], key=("n = 1", ""))
    b = query.positions(store, manifest, SCHEMA, where=where, order=[], key=("n = 1", ""))
    assert a is b and isinstance(a, query.Matches) and not a.passed.flags.writeable
    order = [("s", False)]
    c = query.positions(store, manifest, SCHEMA, where=where, order=order, key=("n = 1", "s"))
    d = query.positions(store, manifest, SCHEMA, where=where, order=order, key=("n = 1", "s"))
    assert c is d and isinstance(c, np.ndarray) and not c.flags.writeable
    assert sorted(c.tolist()) == a[:].tolist()


@pytest.mark.parametrize("where", ["n = 1", "s contains 'a' or f > 0", "not (n in (1, 2))"])
def test_the_pushdown_scan_agrees_with_the_cached_columns(
    chunks: tuple[LocalStore, list[tuple[str, pa.Table]]], where: str
) -> None:
    """Columns too big for the budget are not kept: chunks are scanned with
    predicate pushdown instead, with the same answer."""
    store, made = chunks
    manifest = Manifest(
        (Piece(made[2][0], 5, 30), Piece(made[0][0], 0, 40), Piece(made[2][0], 0, 12))
    )
    args = {"where": data_service.parse_filter(where, SCHEMA), "order": [("s", True)]}
    query.clear_cache()
    kept = query.positions(store, manifest, SCHEMA, key=(where, "a"), **args)  # type: ignore[arg-type]
    s = get_settings()
    old = s.query_cache_bytes
    s.query_cache_bytes = 64
    try:
        query.clear_cache()
        scanned = query.positions(store, manifest, SCHEMA, key=(where, "b"), **args)  # type: ignore[arg-type]
    finally:
        s.query_cache_bytes = old
    assert scanned[:].tolist() == kept[:].tolist() and len(kept) > 0


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), where=FILTERS, sort=SORTS)
def test_chunks_their_extremes_rule_out_are_skipped_with_the_same_answer(
    chunks: tuple[LocalStore, list[tuple[str, pa.Table]]], data: Any, where: str, sort: str
) -> None:
    """The scan of a big table skips chunks by their extremes (``zones``):
    whatever the filter, the positions are the oracle's."""
    store, made = chunks
    spec = data.draw(manifests([t.num_rows for _, t in made]))
    manifest = Manifest(tuple(Piece(made[k][0], s, n) for k, s, n in spec))
    parts = [made[k][1].slice(s, n) for k, s, n in spec]
    if not parts:
        return
    table = pl.from_arrow(pa.concat_tables(parts))
    assert isinstance(table, pl.DataFrame)
    expr, zone = data_service.parse_filter_zones(where, SCHEMA)
    s = get_settings()
    old = s.query_cache_bytes
    s.query_cache_bytes = 64  # the scanning path
    try:
        query.clear_cache()
        got = query.positions(
            store,
            manifest,
            SCHEMA,
            where=expr,
            order=data_service.parse_sort(sort, SCHEMA) if sort else [],
            key=(where, sort),
            zone=zone,
        )
    finally:
        s.query_cache_bytes = old
    assert got[:].tolist() == _oracle(table, where, sort)


@pytest.mark.parametrize(
    ("where", "kept"),
    [
        ("n >= 10", [False, False, False, True]),
        ("n < 10 and s = 'a'", [True, True, True, False]),
        ("s >= 'x' or n = 3", [True, True, True, True]),
        ("n > 100 or s < 'a'", [False, False, False, False]),
        ("not (n >= 10)", [True, True, True, True]),  # a negation says nothing
        ("f > 100", [True, True, True, True]),  # floats may hold NaN: never skipped
        ("n < 0.5", [True, True, True, True]),  # not an integer: never rounded to 0
        ("n > 9.5", [True, True, True, True]),
        ("n < 1e30", [True, True, True, True]),
    ],
)
def test_a_chunks_extremes_rule_it_out(
    chunks: tuple[LocalStore, list[tuple[str, pa.Table]]], where: str, kept: list[bool]
) -> None:
    store, made = chunks
    _, zone = data_service.parse_filter_zones(where, SCHEMA)
    types = {c.name: c.type for c in COLUMNS}
    got = zones.may_match(store, [cid for cid, _ in made], zone, types, chunk_key)
    assert got.tolist() == kept


def test_decimal_values_the_column_cannot_hold_never_skip_a_chunk(tmp_path: Path) -> None:
    """Review of issue 19's chunk skipping: ``d < 1.005`` on decimal(10,2)
    values 1.00–3.00 matches 1.00; rounding the value to the column's scale
    (1.00) would rule the chunk out."""
    cols = [Column("d", "decimal(10,2)")]
    schema = Schema(tuple(cols))
    store = LocalStore(tmp_path / "objects")
    values = [decimal.Decimal(v) for v in ("1.00", "2.00", "3.00")]
    table = pa.table({"d": pa.array(values, pa.decimal128(10, 2))}, schema=arrow_schema(cols))
    cid, _ = write_chunk(store, table, cols, tmp_dir=tmp_path / "tmp")
    for where, expected in [
        ("d < 1.005", [0]),
        ("d > 2.999", [2]),
        ("d = 2.00", [1]),
        ("d < 0.5", []),
        ("d = 123456789012", []),
    ]:
        expr, zone = data_service.parse_filter_zones(where, schema)
        if where == "d < 0.5":
            assert zone is not None  # an exact value: the chunk is ruled out
        s = get_settings()
        old = s.query_cache_bytes
        s.query_cache_bytes = 64
        try:
            query.clear_cache()
            got = query.positions(
                store,
                Manifest((Piece(cid, 0, 3),)),
                schema,
                where=expr,
                order=[],
                key=(where, ""),
                zone=zone,
            )
        finally:
            s.query_cache_bytes = old
        assert got[:].tolist() == expected, where


def test_a_column_named_like_a_struct_field_reads_its_own_extremes(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    table = pa.table(
        {
            "a": pa.array([{"b": 100}, {"b": 200}], pa.struct([("b", pa.int64())])),
            "a.b": pa.array(["x", "y"]),
        }
    )
    path = tmp_path / "c.parquet"
    pq.write_table(table, path)
    store.put_file("chunks/test", path)
    assert zones.extremes(store, "chunks/test", "a.b") == ("x", "y")
    assert zones.extremes(store, "chunks/test", "a") == (None, None)  # a struct: no extremes

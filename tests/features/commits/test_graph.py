"""History and merge-base against a naive oracle, on random commit graphs.

Each example builds a random DAG (merges of up to three parents, sometimes a
second root) through ``commits_service.record`` in a transaction that is
rolled back, then checks, for every commit, the whole-graph and first-parent
histories page by page and the merge base of pairs of commits.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from features.commits import service as commits_service
from tests.features.commits.factories import commit


@pytest.fixture
def conn(stack: dict[str, str]) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(os.environ["DSA_DATABASE_URL"], row_factory=dict_row) as c:
        yield c
        c.rollback()


# each step: ("root",) or (parent choices as fractions of the commits so far)
_step = st.one_of(
    st.just(("root",)),
    st.lists(st.floats(0, 1, exclude_max=True), min_size=1, max_size=3).map(tuple),
)


def _build(
    conn: psycopg.Connection[Any], steps: list[tuple[Any, ...]]
) -> tuple[uuid.UUID, dict[str, list[str]], list[str]]:
    ds = uuid.uuid4()
    conn.execute("INSERT INTO dataset (id, name) VALUES (%s, %s)", (ds, f"g-{ds.hex[:10]}"))
    parents: dict[str, list[str]] = {}
    order: list[str] = []
    root = commit(conn, ds)
    parents[root] = []
    order.append(root)
    for step in steps:
        if step == ("root",):
            ps: list[str] = []
        else:
            ps = list(dict.fromkeys(order[int(f * len(order))] for f in step))
        c = commit(conn, ds, *ps)
        parents[c] = ps
        order.append(c)
    return ds, parents, order


def _ancestors(parents: dict[str, list[str]], c: str) -> set[str]:
    seen = {c}
    todo = [c]
    while todo:
        for p in parents[todo.pop()]:
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return seen


def _page_all(
    conn: psycopg.Connection[Any], ds: uuid.UUID, head: str, per_page: int
) -> tuple[list[str], int]:
    ids: list[str] = []
    offset = 0
    while True:
        rows, total = commits_service.history(
            conn, ds, head, offset=offset, limit=per_page, all_parents=True
        )
        ids += [r["id"] for r in rows]
        offset += per_page
        if offset >= total:
            return ids, total


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(_step, min_size=1, max_size=40), per_page=st.integers(1, 7))
@example(steps=[(0.99,)] * 9, per_page=3)  # a line: pages from both ends
@example(steps=[(0.99,), (0.5,), (0.99, 0.6), (0.0,), (0.99, 0.7, 0.3)] * 3, per_page=4)
def test_history_and_merge_base_match_the_oracle(
    conn: psycopg.Connection[Any], steps: list[tuple[Any, ...]], per_page: int
) -> None:
    ds, parents, order = _build(conn, steps)
    info = {
        r["id"]: r
        for r in conn.execute(
            "SELECT id, generation, created_at, depth FROM commit WHERE dataset_id = %s", (ds,)
        )
    }
    for c in order:
        anc = _ancestors(parents, c)
        # whole graph: every ancestor once, each before its parents, ties by time
        ids, total = _page_all(conn, ds, c, per_page)
        assert total == len(anc) and sorted(ids) == sorted(anc)
        pos = {x: i for i, x in enumerate(ids)}
        assert all(pos[x] < pos[p] for x in ids for p in parents[x])
        # exactly: generation descending, then time descending, then id
        assert ids == sorted(
            anc, key=lambda x: (-info[x]["generation"], -info[x]["created_at"].timestamp(), x)
        )
        # first parent
        fp = [c]
        while parents[fp[-1]]:
            fp.append(parents[fp[-1]][0])
        got: list[str] = []
        for offset in range(0, len(fp), per_page):
            rows, total = commits_service.history(conn, ds, c, offset=offset, limit=per_page)
            assert total == len(fp)
            got += [r["id"] for r in rows]
        assert got == fp
    for i, a in enumerate(order):
        for b in order[i::3]:
            common = _ancestors(parents, a) & _ancestors(parents, b)
            best = {x for x in common if not any(x in _ancestors(parents, y) - {y} for y in common)}
            mb = commits_service.merge_base(conn, ds, a, b)
            assert mb == commits_service.merge_base(conn, ds, b, a)
            if not common:
                assert mb is None
            else:
                assert mb in best
                assert info[mb]["generation"] == max(info[x]["generation"] for x in common)

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from core.errors import NotFound
from core.objects import Commit
from features.commits import service as commits_service
from tests.features.commits.factories import commit


def _connect() -> psycopg.Connection[Any]:
    return psycopg.connect(os.environ["DSA_DATABASE_URL"], row_factory=dict_row)


def _dataset(conn: psycopg.Connection[Any]) -> uuid.UUID:
    ds = uuid.uuid4()
    conn.execute("INSERT INTO dataset (id, name) VALUES (%s, %s)", (ds, f"s-{ds.hex[:10]}"))
    return ds


def _place(conn: psycopg.Connection[Any], ds: uuid.UUID, cid: str) -> tuple[int, int, int]:
    row = conn.execute(
        "SELECT chain, chain_pos, generation FROM commit WHERE dataset_id = %s AND id = %s",
        (ds, cid),
    ).fetchone()
    assert row is not None
    return row["chain"], row["chain_pos"], row["generation"]


def test_record_is_idempotent_and_checks_parents(stack: dict[str, str]) -> None:
    with _connect() as conn:
        ds = _dataset(conn)
        root = commit(conn, ds)
        c = Commit((root,), {}, "a", "2024-01-01T00:00:00.000000Z", "m", {"x": 1})
        assert commits_service.record(conn, dataset_id=ds, commit=c) == c.id
        assert commits_service.record(conn, dataset_id=ds, commit=c) == c.id
        n = conn.execute("SELECT count(*) AS n FROM commit WHERE dataset_id = %s", (ds,))
        assert n.fetchone() == {"n": 2}
        bad = Commit((root, "f" * 64), {}, "a", "2024-01-01T00:00:00.000000Z", "m", {})
        with pytest.raises(NotFound) as e:
            commits_service.record(conn, dataset_id=ds, commit=bad)
        assert e.value.code == "commit_not_found"
        conn.rollback()


def test_two_writers_extending_one_chain(stack: dict[str, str]) -> None:
    """Two transactions record children of the same commit at once: the first
    continues the chain, the second (blocked on the chain key until the first
    commits) starts a new chain; both commits are recorded."""
    with _connect() as setup:
        ds = _dataset(setup)
        root = commit(setup, ds)
        setup.commit()
    first, second = _connect(), _connect()
    try:
        a = commit(first, ds, root)  # holds (chain, 1) until it commits
        out: dict[str, Any] = {}

        def other() -> None:
            try:
                out["b"] = commit(second, ds, root)
                second.commit()
            except Exception as exc:  # pragma: no cover - reported below
                out["error"] = exc

        t = threading.Thread(target=other)
        t.start()
        time.sleep(0.5)  # let it block on the unique key
        first.commit()
        t.join(30)
        assert "error" not in out, out
        with _connect() as conn:
            assert _place(conn, ds, root) == (_place(conn, ds, root)[0], 0, 1)
            ca, pa, ga = _place(conn, ds, a)
            cb, pb, gb = _place(conn, ds, out["b"])
            assert (ca, pa, ga) == (_place(conn, ds, root)[0], 1, 2)
            assert cb != ca and pb == 0 and gb == 2
            assert commits_service.merge_base(conn, ds, a, out["b"]) == root
            rows, total = commits_service.history(conn, ds, out["b"], offset=0, limit=10)
            assert [r["id"] for r in rows] == [out["b"], root] and total == 2
    finally:
        first.close()
        second.close()


def test_whole_graph_ties_by_id_from_both_ends(stack: dict[str, str]) -> None:
    """Commits of one generation and one time are ordered by id, whichever end
    of the history a page is counted from."""
    at = datetime(2024, 5, 1, tzinfo=UTC)
    with _connect() as conn:
        ds = _dataset(conn)
        root = commit(conn, ds, at=at)
        kids = [commit(conn, ds, root, at=at) for _ in range(4)]
        head = commit(conn, ds, *kids, at=at)
        want = [head, *sorted(kids), root]
        for per_page in (1, 2, 3):
            got: list[str] = []
            for offset in range(0, len(want), per_page):
                rows, total = commits_service.history(
                    conn, ds, head, offset=offset, limit=per_page, all_parents=True
                )
                assert total == len(want)
                got += [r["id"] for r in rows]
            assert got == want
        conn.rollback()


def test_record_again_after_a_rollback(stack: dict[str, str]) -> None:
    """A commit recorded in a transaction that rolled back (an import whose
    ref move lost) is recorded for real when recorded again."""
    with _connect() as conn:
        ds = _dataset(conn)
        root = commit(conn, ds)
        conn.commit()
        c = Commit((root,), {}, "a", "2024-01-01T00:00:00.000000Z", "again", {})
        commits_service.record(conn, dataset_id=ds, commit=c)
        assert commits_service.exists(conn, ds, c.id)
        conn.rollback()
        commits_service.record(conn, dataset_id=ds, commit=c)
        conn.commit()
        assert _place(conn, ds, c.id)[1:] == (1, 2)

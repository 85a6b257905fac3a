"""Migration 0002 fills in generations, chains, links and the reflog for
commits and refs made before it (a tree of single-parent commits)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from core.migrate import migrate
from features.commits import service as commits_service

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def test_0002_backfills_a_tree_of_commits(stack: dict[str, str]) -> None:
    server = stack["DSA_DATABASE_URL"]
    name = f"dsa_mig_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = server.rpartition("/")[0] + "/" + name
    try:
        ds = uuid.uuid4()
        parents: dict[str, list[str]] = {}
        depth: dict[str, int] = {}
        t0 = datetime(2024, 1, 1, tzinfo=UTC)
        with psycopg.connect(url) as c:
            c.execute((MIGRATIONS / "0001_initial.sql").read_text())  # type: ignore[call-overload]
            c.execute(
                "CREATE TABLE schema_migration (version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now());"
                "INSERT INTO schema_migration VALUES (1, 'initial')"
            )
            c.execute("INSERT INTO dataset (id, name) VALUES (%s, 'old')", (ds,))
            # main: 0-1-2-3-4; dev from 2: 5-6; fix from 2: 7; old from 0: 8
            shape = [None, 0, 1, 2, 3, 2, 5, 2, 0]
            ids = []
            for i, p in enumerate(shape):
                cid = hashlib.sha256(str(i).encode()).hexdigest()
                ps = [ids[p]] if p is not None else []
                depth[cid] = depth[ps[0]] + 1 if ps else 0
                parents[cid] = ps
                ids.append(cid)
                c.execute(
                    "INSERT INTO commit (dataset_id, id, parents, author, message, created_at,"
                    " tables, row_count, table_count, depth)"
                    " VALUES (%s, %s, %s, 'a', 'm', %s, '{}', 0, 0, %s)",
                    (ds, cid, ps, t0 + timedelta(seconds=i), depth[cid]),
                )
            for ref, i in (("main", 4), ("dev", 6), ("fix", 7), ("old", 8)):
                c.execute(
                    "INSERT INTO ref (dataset_id, name, kind, commit_id, created_by)"
                    " VALUES (%s, %s, 'branch', %s, 'ana')",
                    (ds, ref, ids[i]),
                )
        assert migrate(url)[0] == 2  # then any later migrations
        with psycopg.connect(url, row_factory=dict_row) as c:
            gens = {
                r["id"]: r["generation"] for r in c.execute("SELECT id, generation FROM commit")
            }
            assert gens == {cid: depth[cid] + 1 for cid in ids}
            n_chains = c.execute("SELECT count(DISTINCT chain) AS n FROM commit").fetchone()
            assert n_chains == {"n": 4}
            rows, total = commits_service.history(
                c, ds, ids[6], offset=0, limit=50, all_parents=True
            )
            assert [r["id"] for r in rows] == [ids[i] for i in (6, 5, 2, 1, 0)] and total == 5
            rows, total = commits_service.history(c, ds, ids[4], offset=1, limit=2)
            assert [r["id"] for r in rows] == [ids[3], ids[2]] and total == 5
            assert commits_service.merge_base(c, ds, ids[6], ids[7]) == ids[2]
            assert commits_service.merge_base(c, ds, ids[4], ids[8]) == ids[0]
            log = c.execute(
                "SELECT ref_name, action, new_commit_id, actor FROM ref_log ORDER BY ref_name"
            ).fetchall()
            assert [(r["ref_name"], r["action"], r["actor"]) for r in log] == [
                ("dev", "create", "ana"),
                ("fix", "create", "ana"),
                ("main", "create", "ana"),
                ("old", "create", "ana"),
            ]
    finally:
        with psycopg.connect(server, autocommit=True) as c:
            c.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

"""`dsa migrate` in distributed mode: configured only by DSA_* variables."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[2]


def test_migrate_twice_and_first_admin(stack: dict[str, str], tmp_path: Path) -> None:
    server = stack["DSA_DATABASE_URL"]
    name = f"dsa_cli_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = server.rpartition("/")[0] + "/" + name
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA_")}
    env.update(
        DSA_DATABASE_URL=url,
        DSA_HOME=str(tmp_path),
        DSA_ADMIN_USER="root-admin",
        DSA_ADMIN_PASSWORD="first-admin-pass",
    )
    for _ in range(2):
        out = _migrate(env)
        assert out.returncode == 0, out.stderr
        assert "migrations applied" in out.stdout
    with psycopg.connect(url) as conn:
        admins = conn.execute("SELECT username, is_admin FROM app_user").fetchall()
    assert admins == [("root-admin", True)]


def test_migrate_without_a_database_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DSA_")}
    env["DSA_HOME"] = str(tmp_path)
    out = _migrate(env)
    assert out.returncode != 0
    assert "DSA_DATABASE_URL" in out.stderr and "Traceback" not in out.stderr


def _migrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

"""PostgreSQL access: one psycopg 3 connection pool per process, one
transaction per request or task, named SQL blocks loaded from ``queries.sql``.

Services receive a connection and never commit; the caller's
``transaction()`` block does. ``after_commit`` registers work (typically
enqueueing a Celery task) that runs only once the transaction committed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from core.config import get_settings
from core.errors import DatabaseNotConfigured, Unavailable

_pool: ConnectionPool | None = None
_pool_lock = threading.Lock()
_after_commit: dict[int, list[Callable[[], None]]] = {}


def database_url() -> str:
    url = get_settings().database_url
    if not url:
        raise DatabaseNotConfigured("DSA_DATABASE_URL is not set")
    return url


def get_pool() -> ConnectionPool:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ConnectionPool(
                    database_url(),
                    min_size=1,
                    max_size=get_settings().db_pool_size,
                    kwargs={"row_factory": dict_row},
                    open=True,
                    timeout=10,
                )
    return _pool


_inherited: list[Any] = []


def forget_pool_after_fork() -> None:
    """In a forked child: drop (without closing) the parent's pool, whose
    connections share their sockets with the parent; the child opens its own.
    The old pool is kept referenced so no finalizer closes those sockets."""
    global _pool
    if _pool is not None:
        _inherited.append(_pool)
    _pool = None


def close_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.close()
            _pool = None


@contextmanager
def transaction() -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection inside one transaction; commits on success."""
    try:
        cm = get_pool().connection()
        conn = cm.__enter__()
    except psycopg.OperationalError as exc:
        raise Unavailable("the database is not reachable") from exc
    except Exception as exc:  # pool timeout
        if exc.__class__.__name__ == "PoolTimeout":
            raise Unavailable("the database is busy; try again") from exc
        raise
    key = id(conn)
    _after_commit[key] = []
    ok = False
    try:
        with conn.transaction():
            yield conn
        ok = True
    finally:
        hooks = _after_commit.pop(key, [])
        cm.__exit__(None, None, None)
    if ok:
        for hook in hooks:
            hook()


@contextmanager
def read() -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection in autocommit mode, for requests that only read.

    Each statement is its own snapshot and no BEGIN/COMMIT round trips are
    paid, which matters on the page-read path.
    """
    try:
        cm = get_pool().connection()
        conn = cm.__enter__()
    except psycopg.OperationalError as exc:
        raise Unavailable("the database is not reachable") from exc
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.autocommit = False
        cm.__exit__(None, None, None)


def after_commit(conn: psycopg.Connection[Any], fn: Callable[[], None]) -> None:
    """Run ``fn`` once the transaction that ``conn`` is in has committed."""
    hooks = _after_commit.get(id(conn))
    if hooks is None:  # not inside transaction(): run now
        fn()
    else:
        hooks.append(fn)


_BLOCK = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def load_queries(path: str | Path) -> dict[str, str]:
    """Parse a ``queries.sql`` file of ``-- name: foo`` blocks into a dict."""
    text = Path(path).read_text()
    parts = _BLOCK.split(text)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        queries[name] = body.strip().rstrip(";")
    return queries


class Queries:
    """Named SQL blocks of one feature, loaded once: ``Q = Queries(__file__)``."""

    def __init__(self, module_file: str) -> None:
        self._q = load_queries(Path(module_file).with_name("queries.sql"))

    def __getattr__(self, name: str) -> str:
        try:
            return self._q[name]
        except KeyError:
            raise AttributeError(name) from None

"""PostgreSQL access: one psycopg 3 connection pool per process, one
transaction per request or task, named SQL blocks loaded from ``queries.sql``.

Services receive a connection and never commit; the caller's
``transaction()`` block does. ``after_commit`` registers work (typically
enqueueing a Celery task) that runs only once the transaction committed.

With ``DSA_DATABASE_READ_URL`` set, a second pool reaches a read replica:
``read_immutable`` runs reads of rows that never change once written (the
commit graph) there, and on the primary whenever the replica lacks the row
(replication lag) or fails (decision 0021).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import structlog
from prometheus_client import Counter
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from core.config import get_settings
from core.errors import DatabaseNotConfigured, NotFound, Unavailable

T = TypeVar("T")
log = structlog.get_logger(__name__)

_pool: ConnectionPool | None = None
_replica: ConnectionPool | None = None
_replica_down_until = 0.0  # time.monotonic(): until then reads skip the replica
_pool_lock = threading.Lock()
_after_commit: dict[int, list[Callable[[], None]]] = {}

REPLICA_WAIT_S = 2.0  # longest wait for a replica connection before the primary serves
REPLICA_RETRY_S = 30.0  # after a replica failure, reads go to the primary this long
REPLICA_READS = Counter(
    "dsa_replica_reads",
    "Reads of immutable rows with DSA_DATABASE_READ_URL set, by outcome: replica "
    "(answered there), missing (not replayed yet: read again from the primary), "
    "error (the replica failed: primary), skipped (replica resting after an error)",
    ["outcome"],
)


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
    """In a forked child: drop (without closing) the parent's pools, whose
    connections share their sockets with the parent; the child opens its own.
    The old pools are kept referenced so no finalizer closes those sockets."""
    global _pool, _replica
    _inherited.extend(p for p in (_pool, _replica) if p is not None)
    _pool = _replica = None


def close_pool() -> None:
    """Close this process's pools (the primary's and the replica's, if open)."""
    global _pool, _replica, _replica_down_until
    with _pool_lock:
        for pool in (_pool, _replica):
            if pool is not None:
                pool.close()
        _pool = _replica = None
        _replica_down_until = 0.0


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


def read_immutable(conn: psycopg.Connection[Any], fn: Callable[[psycopg.Connection[Any]], T]) -> T:
    """``fn(replica)``: a read of rows that never change once written, served
    by the read replica (``DSA_DATABASE_READ_URL``), else ``fn(conn)``.

    ``fn`` must raise ``NotFound`` when a row it needs is missing; then, since
    the replica may not have replayed it yet, ``fn`` runs again on the primary,
    whose answer stands: lag never turns into a 404. If the replica fails
    (unreachable, busy past ``REPLICA_WAIT_S``, a query cancelled by replay),
    the primary answers too, and reads skip the replica for ``REPLICA_RETRY_S``.

    The replica serves only when ``conn`` is a ``read()`` connection between
    statements: a transaction must read its own writes, so writes and
    everything read inside ``transaction()`` stay on the primary. One replica
    connection serves all of ``fn``, so its statements see the replica at one
    point of replay or later, never earlier."""
    pool = _replica_pool() if conn.autocommit else None
    if pool is None or conn.info.transaction_status != TransactionStatus.IDLE:
        return fn(conn)
    try:
        with pool.connection(timeout=REPLICA_WAIT_S) as replica:
            result = fn(replica)
    except NotFound:
        REPLICA_READS.labels("missing").inc()
        return fn(conn)
    except (psycopg.Error, PoolTimeout) as exc:
        _replica_failed(exc)
        return fn(conn)
    REPLICA_READS.labels("replica").inc()
    return result


def _replica_pool() -> ConnectionPool | None:
    """The replica's pool, made on first use; None when no replica is set or
    it is resting after a failure."""
    global _replica
    url = get_settings().database_read_url
    if not url:
        return None
    if time.monotonic() < _replica_down_until:
        REPLICA_READS.labels("skipped").inc()
        return None
    if _replica is None:
        with _pool_lock:
            if _replica is None:
                _replica = ConnectionPool(
                    url,
                    min_size=1,
                    max_size=get_settings().db_pool_size,
                    kwargs={"row_factory": dict_row, "autocommit": True},
                    configure=_read_only,
                    open=True,
                    timeout=REPLICA_WAIT_S,
                    name="replica",
                )
    return _replica


def _read_only(conn: psycopg.Connection[Any]) -> None:
    """Replica sessions refuse writes, even on a server that would take them."""
    conn.execute("SET default_transaction_read_only = on")


def _replica_failed(exc: Exception) -> None:
    global _replica_down_until
    REPLICA_READS.labels("error").inc()
    now = time.monotonic()
    if now < _replica_down_until:  # another thread's read failed first and said so
        return
    _replica_down_until = now + REPLICA_RETRY_S
    log.warning(
        "read replica failed; reading from the primary",
        error=f"{exc.__class__.__name__}: {exc}".strip(),
        retry_in_s=REPLICA_RETRY_S,
    )


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

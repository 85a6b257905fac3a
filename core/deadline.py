"""A request's deadline: expensive reads stop when it passes.

``api/ratelimits.py`` gives each expensive request (a compare, a merge
base, a filtered or sorted page, an export) ``DSA_EXPENSIVE_DEADLINE_S`` of
wall-clock time with ``within``; the work it triggers calls ``check``
between its steps and runs its polars queries through ``collect`` (a
background query, cancelled when the deadline passes), so a request that
would take too long ends with 503 ``deadline_exceeded`` and frees its
thread, instead of holding it for as long as the query runs. The deadline
lives in a context variable: Starlette copies it into the thread that runs
a synchronous handler or streams a response; threads the work starts
itself do not see it (they are waited for by a thread that does).
Outside a request (a worker, the CLI) there is no deadline.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

import polars as pl
from polars.lazyframe.in_process import InProcessQuery

from core.errors import DeadlineExceeded

T = TypeVar("T")
R = TypeVar("R")
_deadline: ContextVar[tuple[float, float] | None] = ContextVar("dsa_deadline", default=None)
_POLL_MAX_S = 0.01


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Work in this block (and in handlers it awaits) ends by ``seconds``
    from now; 0 or less: no deadline."""
    token = _deadline.set((time.monotonic() + seconds, seconds) if seconds > 0 else None)
    try:
        yield
    finally:
        _deadline.reset(token)


def check() -> None:
    """Raise ``DeadlineExceeded`` when the request's deadline has passed."""
    d = _deadline.get()
    if d is not None and time.monotonic() > d[0]:
        raise _exceeded(d[1])


def collect(query: pl.LazyFrame) -> pl.DataFrame:
    """``query.collect()``, cancelled (and ``DeadlineExceeded``) when the
    request's deadline passes first."""
    d = _deadline.get()
    if d is None:
        return query.collect()
    running = query.collect(background=True)
    pause = 0.0005
    while True:
        got = running.fetch()
        if got is not None:
            return got
        if time.monotonic() > d[0]:
            running.cancel()
            _drain(running)
            raise _exceeded(d[1])
        time.sleep(pause)
        pause = min(pause * 2, _POLL_MAX_S)


def collect_all(queries: Sequence[pl.LazyFrame], batch: int = 16) -> list[pl.DataFrame]:
    """``pl.collect_all(queries)``, ``batch`` at a time, with the deadline
    checked between batches."""
    if _deadline.get() is None:
        return pl.collect_all(list(queries))
    out: list[pl.DataFrame] = []
    for i in range(0, len(queries), batch):
        check()
        out.extend(pl.collect_all(list(queries[i : i + batch])))
    return out


def map_on(pool: Executor, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``list(pool.map(fn, items))``; when the deadline passes first, the
    calls not yet started are cancelled and ``DeadlineExceeded`` raised
    (a call already running finishes on its own: one chunk's read)."""
    d = _deadline.get()
    if d is None:
        return list(pool.map(fn, items))
    futures = [pool.submit(fn, x) for x in items]
    try:
        return [f.result(timeout=max(0.0, d[0] - time.monotonic())) for f in futures]
    except FutureTimeout:
        raise _exceeded(d[1]) from None
    finally:
        for f in futures:
            f.cancel()


def _drain(running: InProcessQuery) -> None:
    """Hold a cancelled query until polars lets go of it: its result is sent
    to this handle when the query stops, and a handle dropped before then
    makes polars panic (and the process abort)."""

    def wait() -> None:
        with contextlib.suppress(Exception):
            running.fetch_blocking()

    threading.Thread(target=wait, name="polars-cancelled", daemon=True).start()


def _exceeded(seconds: float) -> DeadlineExceeded:
    return DeadlineExceeded(
        f"the request took longer than {seconds:g} s, the most one compare, filtered or "
        "sorted page or export may take to compute (DSA_EXPENSIVE_DEADLINE_S); narrow it "
        "(a filter on fewer or indexed columns, a compare of one table) or export the "
        "data and query it locally",
        limit_s=seconds,
    )

"""One poll of the job table per API process for every open event stream.

Each ``GET /api/v1/jobs/{id}/events`` stream used to read its job four
times a second: 256 streams, a thousand primary-key reads a second per
process. Now streams subscribe to a ``Watcher``; while any stream is open,
one task reads every watched job in one query (``WHERE id = ANY(...)``)
every ``POLL_S`` and wakes the streams, so the database sees one query a
tick per process however many streams are open. Decision 0031 says why
this and not LISTEN/NOTIFY.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import weakref
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool

from core.db import read
from features.jobs import service

log = structlog.get_logger(__name__)
POLL_S = 0.25


class Watcher:
    """The latest row of each watched job, refreshed every ``POLL_S`` by one
    task that runs while anything is watched."""

    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, dict[str, Any]] = {}
        self._watched: Counter[uuid.UUID] = Counter()
        self._tick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.queries = 0  # reads of the job table (tests, metrics)

    @contextlib.asynccontextmanager
    async def watching(self, job_id: uuid.UUID) -> AsyncIterator[None]:
        self._watched[job_id] += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._poll())
        try:
            yield
        finally:
            self._watched[job_id] -= 1
            if self._watched[job_id] <= 0:
                del self._watched[job_id]
                self.rows.pop(job_id, None)

    async def next(self, job_id: uuid.UUID) -> dict[str, Any] | None:
        """The job's row after the next poll (None: it no longer exists)."""
        tick = self._tick
        await tick.wait()
        return self.rows.get(job_id)

    async def _poll(self) -> None:
        while self._watched:
            ids = list(self._watched)
            try:
                found = await run_in_threadpool(_rows, ids)
                self.queries += 1
                self.rows.update(found)
                for gone in set(ids) - set(found):
                    self.rows.pop(gone, None)
            except Exception:  # the database away for a moment: streams wait
                log.warning("could not read the watched jobs", exc_info=True)
            tick, self._tick = self._tick, asyncio.Event()
            tick.set()
            await asyncio.sleep(POLL_S)
        self._task = None


def _rows(ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
    with read() as conn:
        return {r["id"]: r for r in service.get_many(conn, ids)}


_watchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Watcher] = (
    weakref.WeakKeyDictionary()
)


def watcher() -> Watcher:
    """This event loop's watcher (one per API process's loop)."""
    loop = asyncio.get_running_loop()
    if loop not in _watchers:
        _watchers[loop] = Watcher()
    return _watchers[loop]

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from core.db import read, transaction
from core.errors import TooManyRequests
from features.auth.service import User, current_user
from features.datasets import service as datasets_service
from features.datasets.errors import DatasetNotFound
from features.jobs import events, service
from features.jobs.errors import JobNotFound
from features.jobs.models import JobOut

router = APIRouter(prefix="/api/v1", tags=["jobs"])

EVENTS_KEEPALIVE_S = 15.0
# a stream ends after this long (the browser's EventSource reconnects): an
# abandoned tab or a slow client cannot hold a stream, and its polling, for ever
EVENTS_MAX_S = 600.0
# streams one API process serves at once, and to one user; one more gets 429
EVENTS_MAX_STREAMS = 256
EVENTS_MAX_PER_USER = 16
_streams = 0
_streams_of: Counter[uuid.UUID] = Counter()
ENDED = ("succeeded", "failed", "cancelled")


def _visible_job(user: User, job_id: uuid.UUID, role: str = "read") -> dict[str, Any]:
    with read() as conn:
        row = service.get(conn, job_id)
        if row["dataset_id"] is None:  # a job of the whole installation: administrators'
            if not user.is_admin:
                raise JobNotFound(f"job {job_id} does not exist")
            return row
        try:
            datasets_service.require(conn, user, row["dataset_id"], role)
        except DatasetNotFound:  # a job of a dataset the caller cannot see does not exist for it
            raise JobNotFound(f"job {job_id} does not exist") from None
    return row


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: uuid.UUID, user: User = Depends(current_user)) -> JobOut:
    return JobOut.model_validate(service.to_out(_visible_job(user, job_id)))


@router.post("/jobs/{job_id}/cancel", response_model=JobOut, status_code=202)
def cancel_job(job_id: uuid.UUID, user: User = Depends(current_user)) -> JobOut:
    """Stop a queued or running job; nothing it did becomes visible. 409 once it ended."""
    _visible_job(user, job_id, "write")
    with transaction() as conn:
        row = service.cancel(conn, job_id)
    return JobOut.model_validate(service.to_out(row))


@router.get(
    "/jobs/{job_id}/events",
    responses={
        200: {
            "description": "progress events, then an end event (docs/api.md)",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def job_events(job_id: uuid.UUID, user: User = Depends(current_user)) -> StreamingResponse:
    """Server-sent events: a ``progress`` event whenever the job changes, then one
    ``end`` event with its final state, then the stream closes (or after
    ``EVENTS_MAX_S``, telling the client to reconnect)."""
    await run_in_threadpool(_visible_job, user, job_id)
    if _streams >= EVENTS_MAX_STREAMS or _streams_of[user.id] >= EVENTS_MAX_PER_USER:
        raise TooManyRequests("too many event streams are open; try again shortly", retry_after=5)

    async def stream() -> AsyncIterator[bytes]:
        global _streams
        _streams += 1  # counted while it runs (a stream never started never counts)
        _streams_of[user.id] += 1
        try:
            async for part in _events(job_id):
                yield part
        finally:
            _streams -= 1
            _streams_of[user.id] -= 1
            if _streams_of[user.id] <= 0:
                del _streams_of[user.id]

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(job_id: uuid.UUID) -> AsyncIterator[bytes]:
    last: bytes | None = None
    quiet = 0.0
    ends = time.monotonic() + EVENTS_MAX_S
    watch = events.watcher()
    yield b"retry: 1000\n\n"  # reconnect a second after the stream ends early
    async with watch.watching(job_id):
        while time.monotonic() < ends:
            row = await watch.next(job_id)
            if row is None:  # deleted with its dataset meanwhile
                return
            body = orjson.dumps(service.to_out(row), default=str)
            if row["state"] in ENDED:
                yield b"event: end\ndata: " + body + b"\n\n"
                return
            if body != last:
                yield b"event: progress\ndata: " + body + b"\n\n"
                last, quiet = body, 0.0
            elif quiet >= EVENTS_KEEPALIVE_S:
                yield b": keep-alive\n\n"
                quiet = 0.0
            quiet += events.POLL_S

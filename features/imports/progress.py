"""An import's progress on its job row, and the cancel it notices there."""

from __future__ import annotations

import time
import uuid

from features.imports.errors import JobCancelled
from features.jobs import service as jobs_service

PROGRESS_EVERY_S = 0.5


class Progress:
    """Rows and bytes read so far, written to the job at most every
    ``PROGRESS_EVERY_S``; a job cancelled meanwhile, or claimed again by
    another runner, makes ``check`` raise."""

    def __init__(self, job_id: uuid.UUID, attempt: int | None = None) -> None:
        self.job_id = job_id
        self.attempt = attempt  # this runner's claim: a later one supersedes it
        self.rows = 0
        self.bytes = 0
        self._last = 0.0
        self.cancelled = False

    def update(self, *, rows: int | None = None, bytes_read: int | None = None) -> None:
        if rows is not None:
            self.rows = rows
        if bytes_read is not None:
            self.bytes = bytes_read
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            if not jobs_service.report_progress(
                self.job_id, rows=self.rows, bytes_read=self.bytes, attempt=self.attempt
            ):
                self.cancelled = True  # may run on Arrow's reader thread: raise in check()

    def check(self) -> None:
        if self.cancelled:
            raise JobCancelled

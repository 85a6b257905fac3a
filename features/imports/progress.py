"""An import's progress on its job row, and the cancel it notices there.

In the worker's sandboxed child (``sandbox``) the child has no database:
its ``Progress`` reports through a pipe, and the worker relays each report
to the job row and kills the child when the job was cancelled.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from features.imports.errors import JobCancelled
from features.jobs import service as jobs_service

PROGRESS_EVERY_S = 0.5


class Progress:
    """Rows and bytes read so far, reported at most every
    ``PROGRESS_EVERY_S`` (by default to the job row); a job cancelled
    meanwhile, or claimed again by another runner, makes ``check`` raise.
    ``report``/``total`` replace where the figures go (the child's pipe)."""

    def __init__(
        self,
        job_id: uuid.UUID,
        attempt: int | None = None,
        *,
        report: Callable[[int, int], bool] | None = None,
        total: Callable[[int], None] | None = None,
    ) -> None:
        self.job_id = job_id
        self.attempt = attempt  # this runner's claim: a later one supersedes it
        self.rows = 0
        self.bytes = 0
        self._last = 0.0
        self.cancelled = False
        self._report = report or self._to_job
        self._total = total or (lambda n: jobs_service.set_total_bytes(job_id, n))

    def _to_job(self, rows: int, bytes_read: int) -> bool:
        return jobs_service.report_progress(
            self.job_id, rows=rows, bytes_read=bytes_read, attempt=self.attempt
        )

    def update(self, *, rows: int | None = None, bytes_read: int | None = None) -> None:
        if rows is not None:
            self.rows = rows
        if bytes_read is not None:
            self.bytes = bytes_read
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            if not self._report(self.rows, self.bytes):
                self.cancelled = True  # may run on Arrow's reader thread: raise in check()

    def total_bytes(self, total: int) -> None:
        """The file's size, once known (a URL import's download)."""
        self._total(total)

    def check(self) -> None:
        if self.cancelled:
            raise JobCancelled

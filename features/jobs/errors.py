"""Jobs' problem codes (see core/errors.py for the tree and the rules)."""

from __future__ import annotations

from core.errors import Conflict, NotFound, Unavailable


class JobNotFound(NotFound):
    """No such job, or a job of a dataset the caller may not see."""

    default_code = "job_not_found"


class JobEnded(Conflict):
    """A cancel for a job that already ended; ``state`` says how."""

    default_code = "job_ended"


class WorkerLost(Unavailable):
    """Workers died running the job ``MAX_ATTEMPTS`` times (recorded in the job)."""

    default_code = "worker_lost"

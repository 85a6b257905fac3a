"""The schedules feature's problem codes."""

from __future__ import annotations

from core.errors import Conflict, Forbidden, Invalid, NotFound


class ScheduleNotFound(NotFound):
    default_code = "schedule_not_found"


class InvalidCron(Invalid):
    """A cron expression that does not parse, or runs more often than
    ``DSA_SCHEDULE_MIN_INTERVAL_S`` allows (``cron``)."""

    default_code = "invalid_cron"


class TooManySchedules(Conflict):
    """The dataset has ``DSA_SCHEDULES_PER_DATASET`` schedules already (``limit``)."""

    default_code = "too_many_schedules"


class RunInProgress(Conflict):
    """The schedule's last run has not ended: a run now would overlap it."""

    default_code = "run_in_progress"


class ScheduleOwnerGone(Forbidden):
    """The schedule's creator no longer exists or is disabled: its runs
    cannot be authored by anyone."""

    default_code = "schedule_owner_gone"

"""The Celery worker: the app from core.queue plus every feature's tasks.

Beat schedules live here; the periodic functions live in their features.
"""

from __future__ import annotations

from celery.signals import worker_process_init

from core import db
from core.config import get_settings
from core.logs import configure as configure_logs
from core.queue import celery_app, configure

configure()
configure_logs(get_settings().log_level)

import features.imports.tasks  # noqa: E402,F401  (registers imports.run)
import features.integrity.tasks  # noqa: E402,F401  (registers integrity.fsck, .gc, .periodic_gc)
import features.jobs.tasks  # noqa: E402,F401  (registers jobs.reconcile, jobs.clean_tmp)
import features.layouts.tasks  # noqa: E402,F401  (registers layouts.build, .follow, .evict)

celery_app.conf.beat_schedule = {
    "jobs.reconcile": {"task": "jobs.reconcile", "schedule": 30.0},
    "jobs.clean_tmp": {"task": "jobs.clean_tmp", "schedule": 3600.0},
    "imports.clean_uploads": {"task": "imports.clean_uploads", "schedule": 3600.0},
    "layouts.evict": {"task": "layouts.evict", "schedule": 3600.0},
}
if get_settings().gc_interval > 0:  # off by default
    celery_app.conf.beat_schedule["integrity.periodic_gc"] = {
        "task": "integrity.periodic_gc",
        "schedule": get_settings().gc_interval,
    }


@worker_process_init.connect
def _fresh_pool(**_: object) -> None:
    """A forked pool process must not share the parent's database connections."""
    db.close_pool()


app = celery_app

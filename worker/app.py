"""The Celery worker: the app from core.queue plus every feature's tasks.

Beat schedules live here; the periodic functions live in their features.
"""

from __future__ import annotations

from typing import Any

import structlog
from celery.signals import task_postrun, task_prerun, worker_init, worker_process_init

from core import db
from core.config import get_settings
from core.logs import configure as configure_logs
from core.queue import celery_app, configure

configure()
configure_logs(get_settings().log_level)

import features.datasets.tasks  # noqa: E402,F401  (registers datasets.index)
import features.imports.tasks  # noqa: E402,F401  (registers imports.run)
import features.integrity.tasks  # noqa: E402,F401  (registers integrity.fsck, .gc, .periodic_gc)
import features.jobs.tasks  # noqa: E402,F401  (registers jobs.reconcile, jobs.clean_tmp)
import features.layouts.tasks  # noqa: E402,F401  (registers layouts.build, .follow, .evict)
import features.quality.tasks  # noqa: E402,F401  (registers quality.follow)
import features.schedules.tasks  # noqa: E402,F401  (registers schedules.tick, .expire)
import features.stats.tasks  # noqa: E402,F401  (registers stats.follow)
import features.webhooks.tasks  # noqa: E402,F401  (registers webhooks.deliver, .sweep, .expire)

celery_app.conf.beat_schedule = {
    "jobs.reconcile": {"task": "jobs.reconcile", "schedule": 30.0},
    "jobs.clean_tmp": {"task": "jobs.clean_tmp", "schedule": 3600.0},
    "imports.clean_uploads": {"task": "imports.clean_uploads", "schedule": 3600.0},
    "layouts.evict": {"task": "layouts.evict", "schedule": 3600.0},
    "webhooks.sweep": {"task": "webhooks.sweep", "schedule": get_settings().webhook_sweep_s},
    "webhooks.expire": {"task": "webhooks.expire", "schedule": 3600.0},
    "schedules.tick": {"task": "schedules.tick", "schedule": get_settings().schedule_tick_s},
    "schedules.expire": {"task": "schedules.expire", "schedule": 3600.0},
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


@task_prerun.connect
def _bind_request(task: Any = None, task_id: str | None = None, **_: object) -> None:
    """Every log line of a task carries the request id that sent it (and the
    task's name and id); forked import children inherit them."""
    request = getattr(task, "request", None)
    rid = getattr(request, "dsa_request_id", None) or (
        (getattr(request, "headers", None) or {}).get("dsa_request_id")
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        task=getattr(task, "name", None), task_id=task_id, **({"request_id": rid} if rid else {})
    )


@task_postrun.connect
def _unbind_request(**_: object) -> None:
    structlog.contextvars.clear_contextvars()


@worker_init.connect
def _serve_metrics(**_: object) -> None:
    """The pool's metrics on ``DSA_WORKER_METRICS_PORT`` (when set), merged
    across its processes when ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    port = get_settings().worker_metrics_port
    if port:
        from prometheus_client import start_http_server

        from core.metrics import registry

        start_http_server(port, registry=registry())

"""The Celery application, configured from settings.

Lives in core so that features can declare their tasks with
``@celery_app.task`` and enqueue with ``core.db.after_commit``; ``worker/``
imports the task modules and runs the worker.
"""

from __future__ import annotations

import structlog
from celery import Celery

from core.config import get_settings


def _make() -> Celery:
    app = Celery("dsa")
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        task_default_queue="dsa",
    )
    return app


celery_app = _make()


def configure() -> Celery:
    """Point the app at the configured broker (called once per process)."""
    url = get_settings().redis_url
    if url:
        celery_app.conf.broker_url = url
    return celery_app


def enqueue(name: str, *args: str) -> None:
    """Send task ``name``; the request id the sender's logs carry goes along
    (the worker binds it to the task's log lines: one import can be followed
    from its upload request through the worker)."""
    rid = structlog.contextvars.get_contextvars().get("request_id")
    headers = {"dsa_request_id": rid} if rid else None
    configure().send_task(name, args=list(args), headers=headers)

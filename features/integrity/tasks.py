"""Celery tasks of the integrity feature: thin wrappers over ``service``."""

from __future__ import annotations

import uuid

from core import db
from core.config import get_settings
from core.queue import celery_app
from features.integrity import service


@celery_app.task(
    name="integrity.fsck", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def fsck(job_id: str) -> None:
    service.run_job(uuid.UUID(job_id))


@celery_app.task(
    name="integrity.gc", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def gc(job_id: str) -> None:
    service.run_job(uuid.UUID(job_id))


@celery_app.task(name="integrity.periodic_gc", ignore_result=True)
def periodic_gc() -> None:
    """Beat's gc every ``DSA_GC_INTERVAL`` (off by default): a job like an
    administrator's, with the default grace period."""
    if get_settings().gc_interval > 0:
        with db.transaction() as conn:
            if not service.gc_pending(conn):  # never two queued behind each other
                service.submit(conn, None, "gc", {"dry_run": False})

"""Celery tasks of the integrity feature: thin wrappers over ``service``."""

from __future__ import annotations

import uuid

from core.queue import celery_app
from features.integrity import service


@celery_app.task(
    name="integrity.fsck", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def fsck(job_id: str) -> None:
    service.run_job(uuid.UUID(job_id))

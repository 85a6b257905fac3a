"""Celery tasks of the import feature: thin wrappers over ``service``."""

from __future__ import annotations

import uuid

from core.queue import celery_app
from features.imports import service


@celery_app.task(name="imports.run", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run(job_id: str) -> None:
    service.run(uuid.UUID(job_id))

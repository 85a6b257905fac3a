"""Celery tasks of the import feature: thin wrappers over ``service``."""

from __future__ import annotations

import uuid
from typing import Any

import structlog

from core.config import get_settings
from core.queue import celery_app
from features.imports import service

log = structlog.get_logger(__name__)


@celery_app.task(
    name="imports.run",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    max_retries=None,
)
def run(self: Any, job_id: str) -> None:
    if not service.run(uuid.UUID(job_id)):
        # another runner has the job, by its heartbeat: look again once that
        # would have gone stale (its worker died), until the job ends
        raise self.retry(countdown=get_settings().job_stale_after_s)


@celery_app.task(name="imports.clean_uploads", ignore_result=True)
def clean_uploads() -> None:
    removed = service.clean_uploads(get_settings().tmp_retention_s)
    if removed:
        log.info("stale uploads removed", count=removed)

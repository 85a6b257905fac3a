"""Celery tasks of the import feature: thin wrappers over ``service``."""

from __future__ import annotations

import uuid

import structlog

from core.config import get_settings
from core.queue import celery_app
from features.imports import service

log = structlog.get_logger(__name__)


@celery_app.task(name="imports.run", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def run(job_id: str) -> None:
    service.run(uuid.UUID(job_id))


@celery_app.task(name="imports.clean_uploads", ignore_result=True)
def clean_uploads() -> None:
    removed = service.clean_uploads(get_settings().tmp_retention_s)
    if removed:
        log.info("stale uploads removed", count=removed)

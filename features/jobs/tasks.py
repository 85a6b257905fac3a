"""Periodic tasks of the jobs feature (scheduled in worker/app.py)."""

from __future__ import annotations

import structlog

from core.config import get_settings
from core.queue import celery_app
from features.jobs import service

log = structlog.get_logger(__name__)


@celery_app.task(name="jobs.reconcile", ignore_result=True)
def reconcile() -> None:
    resent = service.reconcile(get_settings().job_stale_after_s)
    if resent:
        log.warning("jobs sent again", jobs=[str(j) for j in resent])


@celery_app.task(name="jobs.clean_tmp", ignore_result=True)
def clean_tmp() -> None:
    removed = service.clean_tmp(get_settings().tmp_dir, get_settings().tmp_retention_s)
    if removed:
        log.info("temporary files removed", count=removed)

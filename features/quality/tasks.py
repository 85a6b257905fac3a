"""Thin Celery task of the quality feature: score the commit a branch moved to."""

from __future__ import annotations

from core.queue import celery_app
from features.quality import service


@celery_app.task(name="quality.follow", acks_late=True, ignore_result=True)
def follow(dataset_id: str, commit_id: str, branch: str | None = None) -> None:
    service.follow(dataset_id, commit_id, branch)

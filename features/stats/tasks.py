"""Thin Celery task of the statistics feature: compute the statistics of the
table versions a branch moved to."""

from __future__ import annotations

from core.queue import celery_app
from features.stats import service


@celery_app.task(name="stats.follow", acks_late=True, ignore_result=True)
def follow(old: str, new: str) -> None:
    service.follow_move(old, new)

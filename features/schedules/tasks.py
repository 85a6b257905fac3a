"""Thin Celery task of the schedules feature: beat's tick."""

from __future__ import annotations

from core.queue import celery_app
from features.schedules import service


@celery_app.task(name="schedules.tick", ignore_result=True)
def tick() -> None:
    service.tick()

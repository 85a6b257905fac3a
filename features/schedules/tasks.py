"""Thin Celery tasks of the schedules feature: beat's tick, and the runs' log kept short."""

from __future__ import annotations

from core.queue import celery_app
from features.schedules import service


@celery_app.task(name="schedules.tick", ignore_result=True)
def tick() -> None:
    service.tick()


@celery_app.task(name="schedules.expire", ignore_result=True)
def expire() -> None:
    service.expire()

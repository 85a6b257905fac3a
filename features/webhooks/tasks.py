"""Thin Celery tasks of the webhooks feature."""

from __future__ import annotations

import uuid

from core.queue import celery_app
from features.webhooks import service


@celery_app.task(name="webhooks.deliver", acks_late=True, ignore_result=True)
def deliver(delivery_id: str) -> None:
    service.deliver(uuid.UUID(delivery_id))


@celery_app.task(name="webhooks.sweep", ignore_result=True)
def sweep() -> None:
    service.sweep()


@celery_app.task(name="webhooks.expire", ignore_result=True)
def expire() -> None:
    service.expire()

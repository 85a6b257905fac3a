"""Thin Celery task of the layouts feature: build a read copy asked for."""

from __future__ import annotations

from core.queue import celery_app
from features.layouts import service


@celery_app.task(name="layouts.build", acks_late=True, ignore_result=True)
def build(manifest_id: str) -> None:
    service.build(manifest_id)

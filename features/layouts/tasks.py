"""Thin Celery tasks of the layouts feature: build a read copy asked for;
ask for the read copies a branch's move calls for; evict superseded copies."""

from __future__ import annotations

from core.queue import celery_app
from features.layouts import service


@celery_app.task(name="layouts.build", acks_late=True, ignore_result=True)
def build(manifest_id: str) -> None:
    service.build(manifest_id)


@celery_app.task(name="layouts.follow", acks_late=True, ignore_result=True)
def follow(old: str, new: str) -> None:
    service.follow_move(old, new)


@celery_app.task(name="layouts.evict", acks_late=True, ignore_result=True)
def evict() -> None:
    service.sweep()

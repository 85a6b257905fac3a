"""Thin Celery task of the datasets feature: keep a dataset's catalog entry
(its default branch's table and column names) after a branch moves."""

from __future__ import annotations

import uuid

from core.queue import celery_app
from features.datasets import catalog


@celery_app.task(name="datasets.index", acks_late=True, ignore_result=True)
def index(dataset_id: str, commit_id: str) -> None:
    catalog.index(uuid.UUID(dataset_id), commit_id)

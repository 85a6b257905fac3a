"""Request and response models of the schedules feature (docs/api.md, "Schedules")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from features.imports.models import UrlFields


class ScheduleCreate(UrlFields):
    """A URL import's fields (``imports.models.UrlFields``), its branch and cron."""

    branch: str = Field(default="main", min_length=1, max_length=200)
    cron: str = Field(min_length=1, max_length=200)


class SchedulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paused: bool | None = None
    cron: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("cron")
    @classmethod
    def _strip(cls, cron: str | None) -> str | None:
        return cron.strip() if cron else cron


class Run(BaseModel):
    id: uuid.UUID
    trigger: Literal["cron", "catch-up", "manual"]
    due_at: datetime
    started_at: datetime
    finished_at: datetime | None
    outcome: Literal["committed", "unchanged", "failed", "skipped"] | None
    job_id: uuid.UUID | None
    commit_id: str | None
    bytes: int | None
    duration_s: float | None
    problem: dict[str, Any] | None


class ScheduleOut(BaseModel):
    id: uuid.UUID
    dataset_id: uuid.UUID
    branch: str
    cron: str
    urls: list[str]  # as readers of provenance see them: no credentials, no query string
    checksum: str | None
    mode: str
    options: dict[str, Any]
    table: str | None
    message: str | None
    paused: bool
    paused_reason: str | None
    failures: int
    next_run_at: datetime | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    runs: list[Run] = []


class ScheduleList(BaseModel):
    items: list[ScheduleOut]


class RunStarted(BaseModel):
    run_id: uuid.UUID
    job_id: uuid.UUID | None
    links: dict[str, str]

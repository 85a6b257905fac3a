"""Request and response models of the schedules feature (docs/api.md, "Schedules")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, max_length=4096)
    urls: list[str] | None = Field(default=None, min_length=1, max_length=10)
    branch: str = Field(default="main", min_length=1, max_length=200)
    cron: str = Field(min_length=1, max_length=200)
    mode: str | None = None
    options: dict[str, Any] | None = None
    checksum: str | None = Field(default=None, pattern=r"^(blake3|sha256):[0-9a-fA-F]{64}$")
    message: str | None = Field(default=None, max_length=10_000)
    table: str | None = None

    @model_validator(mode="after")
    def _some_url(self) -> ScheduleCreate:
        urls = self.all_urls()
        if not urls:
            raise ValueError("give 'url' or 'urls'")
        for u in urls:
            parts = urlsplit(u)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{u!r} is not an http(s) URL")
        return self

    def all_urls(self) -> list[str]:
        return ([self.url] if self.url else []) + list(self.urls or [])


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

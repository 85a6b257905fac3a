"""Request and response models of the webhooks feature (docs/api.md, "Webhooks")."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

Event = Literal["commit", "job.failed", "quality.failed", "ref.moved", "schedule.paused"]
EVENTS: tuple[str, ...] = ("commit", "job.failed", "quality.failed", "ref.moved", "schedule.paused")


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2048)
    events: list[Event] = Field(min_length=1, max_length=len(EVENTS))
    # signs every body; given, or made (and shown in the answer, that once)
    secret: str | None = Field(default=None, min_length=16, max_length=256)

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        """An http(s) URL that every part of the post can handle: printable
        ASCII (IDN hosts in their xn-- form), a port that is a port, a host
        name of labels under 64 characters."""
        parts = urlsplit(url)
        try:
            port = parts.port
            host = (parts.hostname or "").encode("idna")
            httpx.URL(url)
        except (ValueError, UnicodeError, httpx.InvalidURL):
            raise ValueError(f"{url!r} is not a URL a webhook can post to") from None
        if parts.scheme not in ("http", "https") or not host or port == 0:
            raise ValueError(f"{url!r} is not an http(s) URL")
        if not (url.isascii() and url.isprintable()):
            raise ValueError("the URL must be printable ASCII (percent-encode the rest)")
        return url

    @field_validator("events")
    @classmethod
    def _unique(cls, events: list[str]) -> list[str]:
        return sorted(set(events))


class WebhookOut(BaseModel):
    id: uuid.UUID
    dataset_id: uuid.UUID
    url: str
    events: list[str]
    created_by: uuid.UUID | None = None
    created_at: datetime
    last_delivery: dict[str, Any] | None = None


class WebhookCreated(WebhookOut):
    secret: str  # shown this once


class WebhookList(BaseModel):
    items: list[WebhookOut]


class Attempt(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int


class Delivery(BaseModel):
    id: uuid.UUID
    event: str
    state: Literal["pending", "delivered", "failed"]
    attempts: list[Attempt]
    created_at: datetime
    next_attempt_at: datetime | None
    finished_at: datetime | None


class DeliveryList(BaseModel):
    items: list[Delivery]
    total: int
    page: int
    per_page: int


class TestSent(BaseModel):
    delivery_id: uuid.UUID

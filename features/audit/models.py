from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from core.models import Links


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor: str | None
    action: str
    dataset_id: uuid.UUID | None
    target: str | None
    ip: str | None
    outcome: Literal["ok", "denied", "failed"]
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntry]
    total: int
    page: int
    per_page: int
    links: Links

"""Refs' response models (request models live with the routes)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from core.models import Links

RefKind = Literal["branch", "tag"]


class RefOut(BaseModel):
    name: str
    kind: RefKind
    commit_id: str
    protected: bool
    message: str | None
    created_by: str | None
    created_at: datetime
    updated_at: datetime


class RefList(BaseModel):
    items: list[RefOut]


class RefLogEntry(BaseModel):
    id: int
    ref: str
    kind: RefKind
    action: Literal["create", "move", "protect", "unprotect", "delete"]
    old_commit_id: str | None
    new_commit_id: str | None
    by: str
    reason: str
    created_at: datetime


class RefLog(BaseModel):
    items: list[RefLogEntry]
    total: int
    page: int
    per_page: int
    links: Links

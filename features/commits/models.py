from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from core.models import ColumnOut, Links


class CommitStats(BaseModel):
    tables: int
    rows: int = Field(description="rows of all tables")


class CommitSummary(BaseModel):
    id: str
    parents: list[str]
    message: str
    author: str
    created_at: datetime
    stats: CommitStats


class CommitPage(BaseModel):
    items: list[CommitSummary]
    total: int
    page: int
    per_page: int
    head: str = Field(description="the commit the ref resolved to")
    links: Links


class CommitTable(BaseModel):
    name: str
    row_count: int
    schema_id: str
    manifest_id: str
    columns: list[ColumnOut]


class CommitDetail(CommitSummary):
    tables: list[CommitTable]
    provenance: dict[str, Any]


class MergeBase(BaseModel):
    merge_base: str | None = Field(description="null when the two share no history")
    a: str
    b: str

"""Merges' response models (request models live with the routes)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class MergeOut(BaseModel):
    """``merge_base`` and ``conflicts_resolved`` only for a three-way merge."""

    commit_id: str
    fast_forward: bool
    up_to_date: bool
    merge_base: str | None = None
    conflicts_resolved: int | None = Field(default=None, description="three-way merges only")


class RevertOut(BaseModel):
    commit_id: str
    reverted: str
    conflicts_resolved: int

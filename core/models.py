"""What the features' response models share (decision 0018)."""

from __future__ import annotations

from pydantic import BaseModel


class Links(BaseModel):
    """``links`` of a paginated list: the URL of the next page, or null."""

    next: str | None = None


class ColumnOut(BaseModel):
    """A column of a stored table (``core.schema.Column.to_json()``)."""

    name: str
    type: str
    nullable: bool

"""What the features' response models share (decision 0018)."""

from __future__ import annotations

from pydantic import BaseModel


class Links(BaseModel):
    """``links`` of a paginated list: the URL of the next page, or null."""

    next: str | None = None


class ColumnOut(BaseModel):
    """A column of a stored table (``core.schema.Column.to_json()``): with
    ``precision``/``scale`` (decimal), ``item`` (list) or ``fields`` (struct)
    where the type has them."""

    model_config = {"extra": "allow"}

    name: str
    type: str
    nullable: bool


class Problem(BaseModel):
    """An RFC 9457 problem document, as every error answer is (api/errors.py);
    members beyond these (``errors``, ``line``, ``limit`` …) depend on the code."""

    model_config = {"extra": "allow"}

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None

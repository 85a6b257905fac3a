from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from core.models import ColumnOut


class TableOut(BaseModel):
    name: str
    row_count: int
    columns: list[ColumnOut]
    digest: str | None = Field(
        default=None,
        description="blake3:<hex> of the rows in order (docs/hash-spec.md); present when "
        "known, always with ?digest=true",
    )


class TableList(BaseModel):
    commit_id: str
    items: list[TableOut]


class PageColumn(BaseModel):
    """``precision``/``scale`` (decimal), ``item`` (list), ``fields`` (struct)
    come with the types that have them."""

    model_config = {"extra": "allow"}

    name: str
    type: str


class SortKey(BaseModel):
    column: str
    descending: bool


class DataPage(BaseModel):
    """A page of rows; values as in docs/api.md, "Values in JSON"."""

    commit_id: str
    table: str
    columns: list[PageColumn]
    rows: list[list[Any]]
    offset: int
    limit: int
    total_rows: int = Field(description="rows of the table, or those passing the filter")
    filter: str | None = Field(default=None, description="the filter as given; absent without")
    sort: list[SortKey] | None = Field(default=None, description="absent without a sort")

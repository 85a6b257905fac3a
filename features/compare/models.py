from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from features.stats.models import ColumnStatsDiff


class _FromTo(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class TableStatus(BaseModel):
    name: str
    status: Literal["added", "removed", "modified", "unchanged"]


class Renamed(_FromTo):
    from_: str = Field(alias="from")
    to: str


class Retyped(_FromTo):
    column: str
    from_: str = Field(alias="from")
    to: str
    widening: bool


class NullabilityChange(_FromTo):
    column: str
    from_: bool = Field(alias="from")
    to: bool


class SchemaDiff(BaseModel):
    added: list[str]
    removed: list[str]
    renamed: list[Renamed]
    retyped: list[Retyped]
    reordered: list[str]
    nullability: list[NullabilityChange]
    breaking: bool


class Summary(BaseModel):
    added: int
    removed: int
    modified: int
    unchanged: int


class CellChange(_FromTo):
    from_: Any = Field(alias="from")
    to: Any


class Change(BaseModel):
    """A row added, removed or modified; positions, ``key`` and ``cells``
    appear only where they apply (see docs/api.md, "Compare")."""

    op: Literal["add", "remove", "modify"]
    base_position: int | None = None
    head_position: int | None = None
    key: dict[str, Any] | None = Field(default=None, description="with a primary key")
    cells: dict[str, CellChange] | None = Field(default=None, description="modify only")
    row: dict[str, Any]


class Comparison(BaseModel):
    base_commit_id: str
    head_commit_id: str
    table: str
    tables: list[TableStatus]
    key: list[str] | None
    schema_diff: SchemaDiff
    summary: Summary
    changes: list[Change]
    offset: int
    limit: int
    total_changes: int
    stats_diff: list[ColumnStatsDiff] | None = Field(
        default=None, description="with ?stats=true: each column's statistics on both sides"
    )

"""Response models of the statistics feature (docs/api.md, "Statistics")."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Bin(BaseModel):
    lo: Any
    hi: Any
    count: int


class TopValue(BaseModel):
    value: Any
    count: int


class ColumnStats(BaseModel):
    name: str
    type: str
    null_count: int
    nan_count: int | None = Field(
        default=None, description="floats: NaN values (left out of the rest)"
    )
    distinct_count: int
    distinct_approx: bool = Field(description="true when distinct_count is an estimate (±2 %)")
    min: Any = None
    max: Any = None
    mean: float | str | None = None
    stddev: float | str | None = None
    quantiles: dict[str, Any] | None = Field(default=None, description="p25, p50, p75")
    histogram: list[Bin] | None = None
    top_values: list[TopValue] | None = None
    top_values_approx: bool | None = Field(
        default=None, description="true when counted in the sample and scaled"
    )


class TableStats(BaseModel):
    commit_id: str
    table: str
    row_count: int
    sample_rows: int = Field(
        description="rows quantiles, histograms and approximate top values were counted in "
        "(all rows when equal to row_count)"
    )
    columns: list[ColumnStats]


class ColumnStatsDiff(BaseModel):
    column: str
    base: ColumnStats | None = Field(description="absent (null) when the column is new")
    head: ColumnStats | None = Field(description="absent (null) when the column was dropped")
    changed: list[str] = Field(description="the statistics that differ")
    top_values_gained: list[Any] | None = None
    top_values_lost: list[Any] | None = None

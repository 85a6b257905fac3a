"""Request and response models of the quality feature (docs/api.md, "Quality")."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Check = Literal[
    "not_null",
    "unique",
    "min",
    "max",
    "between",
    "in",
    "regex",
    "row_count_min",
    "row_count_change_max_pct",
    "schema",
]


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    table: str = Field(min_length=1, max_length=200)
    column: str | None = Field(default=None, max_length=200)
    check: Check
    args: dict[str, Any] = Field(default_factory=dict)
    weight: float = Field(default=1.0, gt=0, le=1000)


class QualityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[Rule] = Field(default_factory=list, max_length=200)
    threshold: float = Field(default=100.0, ge=0, le=100)
    gate_branches: list[str] = Field(default_factory=list, max_length=100)


class QualityConfigOut(QualityConfig):
    model_config = ConfigDict(extra="ignore")
    updated_at: datetime | None = None


class RuleResult(BaseModel):
    name: str
    table: str
    column: str | None = None
    check: str
    weight: float
    passed: bool
    failing_rows: int
    detail: str | None = Field(default=None, description="why, for a rule that failed")
    sample: list[dict[str, Any]] = Field(
        description="up to 5 failing rows: {row (0-based position), value}, or problems"
    )


class QualityReport(BaseModel):
    commit_id: str
    score: float = Field(description="0–100: the weighted share of passing rules")
    threshold: float
    passed: bool
    gated: bool | None = Field(default=None, description="whether the ref is a gated branch")
    results: list[RuleResult]

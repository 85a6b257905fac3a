from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobProgress(BaseModel):
    rows: int
    bytes: int
    total_bytes: int | None


class JobLinks(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    self_: str = Field(alias="self")


class JobOut(BaseModel):
    """A job (``GET /api/v1/jobs/{job_id}``; also each event of its stream)."""

    id: uuid.UUID
    kind: str
    state: JobState
    dataset_id: uuid.UUID | None = Field(
        description="the dataset; null for a job of the whole installation (fsck)"
    )
    ref: str | None = Field(description="the branch the job writes to (null when none)")
    progress: JobProgress
    commit_id: str | None
    error: dict[str, Any] | None = Field(description="the problem document of a failed job")
    result: dict[str, Any] | None = Field(
        description="a succeeded job's outcome: rows, table, table_rows, unchanged?, rebases?"
    )
    schema_suggestions: list[dict[str, Any]] | None = Field(
        default=None,
        description="an import whose columns differ from the table's: what the change "
        "probably meant ({kind, from, to, confidence, reason}); options.column_map applies "
        "renames on the next upload",
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    links: JobLinks

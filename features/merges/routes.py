from __future__ import annotations

import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from core.db import transaction
from features.auth.service import User, current_user
from features.datasets import service as datasets_service
from features.merges import service
from features.merges.models import MergeOut, RevertOut

router = APIRouter(prefix="/api/v1", tags=["merges"])
Strategy = Literal["fail", "ours", "theirs"]


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=200)
    target: str = Field(min_length=1, max_length=200)
    message: str | None = Field(default=None, max_length=10_000)
    expected_target_commit_id: str | None = Field(default=None, max_length=64)
    strategy: Strategy = "fail"


class RevertIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    branch: str = Field(min_length=1, max_length=200)
    commit: str = Field(min_length=1, max_length=200)
    message: str | None = Field(default=None, max_length=10_000)
    expected_commit_id: str | None = Field(default=None, max_length=64)
    strategy: Strategy = "fail"


# a three-way merge alone has merge_base and conflicts_resolved: exclude_unset
@router.post(
    "/datasets/{dataset_id}/merges", response_model=MergeOut, response_model_exclude_unset=True
)
def merge(
    dataset_id: uuid.UUID, body: MergeIn, user: User = Depends(current_user)
) -> dict[str, Any]:
    with transaction() as conn:
        ds = datasets_service.require_branch(conn, user, dataset_id, body.target)
    return service.merge(
        ds,
        source=body.source,
        target=body.target,
        by=user.username,
        message=body.message,
        expected_target=body.expected_target_commit_id,
        strategy=body.strategy,
    )


@router.post("/datasets/{dataset_id}/reverts", response_model=RevertOut, status_code=201)
def revert(
    dataset_id: uuid.UUID, body: RevertIn, user: User = Depends(current_user)
) -> dict[str, Any]:
    with transaction() as conn:
        ds = datasets_service.require_branch(conn, user, dataset_id, body.branch)
    return service.revert(
        ds,
        branch=body.branch,
        commit=body.commit,
        by=user.username,
        message=body.message,
        expected=body.expected_commit_id,
        strategy=body.strategy,
    )

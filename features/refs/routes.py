from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from core.db import read, transaction
from features.auth.service import User, current_user, optional_user
from features.datasets import service as datasets_service
from features.refs import service

router = APIRouter(prefix="/api/v1", tags=["refs"])


class RefCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(min_length=1, max_length=200)
    from_: str = Field(alias="from", min_length=1, max_length=200)


class TagCreate(RefCreate):
    message: str | None = Field(default=None, max_length=10_000)


@router.get("/datasets/{dataset_id}/refs")
def list_refs(dataset_id: uuid.UUID, user: User | None = Depends(optional_user)) -> dict[str, Any]:
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "read")
        return {"items": service.list_refs(conn, dataset_id)}


@router.post("/datasets/{dataset_id}/branches", status_code=201)
def create_branch(
    dataset_id: uuid.UUID, body: RefCreate, user: User = Depends(current_user)
) -> dict[str, Any]:
    with transaction() as conn:
        datasets_service.require(conn, user, dataset_id, "write")
        return service.create_branch(
            conn, dataset_id=dataset_id, name=body.name, from_ref=body.from_, by=user.username
        )


@router.post("/datasets/{dataset_id}/tags", status_code=201)
def create_tag(
    dataset_id: uuid.UUID, body: TagCreate, user: User = Depends(current_user)
) -> dict[str, Any]:
    with transaction() as conn:
        datasets_service.require(conn, user, dataset_id, "write")
        return service.create_tag(
            conn,
            dataset_id=dataset_id,
            name=body.name,
            from_ref=body.from_,
            by=user.username,
            message=body.message,
        )

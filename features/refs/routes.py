from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.db import read, transaction
from features.auth.service import User, current_user, optional_user
from features.datasets import service as datasets_service
from features.quality import service as quality_service
from features.refs import service
from features.refs.models import RefList, RefLog, RefOut

router = APIRouter(prefix="/api/v1", tags=["refs"])

_REASON = Field(default="", max_length=1000)


class RefCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(min_length=1, max_length=200)
    from_: str = Field(alias="from", min_length=1, max_length=200)
    reason: str = _REASON


class TagCreate(RefCreate):
    message: str | None = Field(default=None, max_length=10_000)


class BranchPatch(BaseModel):
    """A reset (``commit_id`` with ``expected_commit_id``), a protection change, or both."""

    model_config = ConfigDict(extra="forbid")
    commit_id: str | None = Field(default=None, min_length=1, max_length=200)
    expected_commit_id: str | None = Field(default=None, min_length=7, max_length=64)
    protected: bool | None = None
    reason: str = _REASON

    @model_validator(mode="after")
    def _something(self) -> BranchPatch:
        if self.commit_id is None and self.protected is None:
            raise ValueError("give commit_id (with expected_commit_id) or protected")
        if self.commit_id is not None and self.expected_commit_id is None:
            raise ValueError("commit_id needs expected_commit_id (the commit the branch is at)")
        return self


@router.get("/datasets/{dataset_id}/refs", response_model=RefList)
def list_refs(dataset_id: uuid.UUID, user: User | None = Depends(optional_user)) -> dict[str, Any]:
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "read")
        return {"items": service.list_refs(conn, dataset_id)}


@router.post("/datasets/{dataset_id}/branches", response_model=RefOut, status_code=201)
def create_branch(
    dataset_id: uuid.UUID, body: RefCreate, user: User = Depends(current_user)
) -> dict[str, Any]:
    with transaction() as conn:
        datasets_service.require(conn, user, dataset_id, "write")
        quality_service.require_gate_at(conn, user, dataset_id, body.name, body.from_)
        return service.create_branch(
            conn,
            dataset_id=dataset_id,
            name=body.name,
            from_ref=body.from_,
            by=user.username,
            reason=body.reason,
        )


@router.post("/datasets/{dataset_id}/tags", response_model=RefOut, status_code=201)
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
            reason=body.reason,
        )


@router.get("/datasets/{dataset_id}/branches/{name:path}", response_model=RefOut)
def get_branch(
    dataset_id: uuid.UUID, name: str, user: User | None = Depends(optional_user)
) -> dict[str, Any]:
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "read")
        return service.get_ref(conn, dataset_id, name, "branch")


@router.get("/datasets/{dataset_id}/tags/{name:path}", response_model=RefOut)
def get_tag(
    dataset_id: uuid.UUID, name: str, user: User | None = Depends(optional_user)
) -> dict[str, Any]:
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "read")
        return service.get_ref(conn, dataset_id, name, "tag")


@router.patch("/datasets/{dataset_id}/branches/{name:path}", response_model=RefOut)
def patch_branch(
    dataset_id: uuid.UUID, name: str, body: BranchPatch, user: User = Depends(current_user)
) -> dict[str, Any]:
    with transaction() as conn:
        if body.protected is not None:
            datasets_service.require(conn, user, dataset_id, "admin")
        else:  # a reset: a protected branch is its admins' alone
            datasets_service.require_branch(conn, user, dataset_id, name)
        out = service.get_branch(conn, dataset_id, name)
        if body.protected is not None:
            out = service.set_protected(
                conn,
                dataset_id=dataset_id,
                name=name,
                protected=body.protected,
                by=user.username,
                reason=body.reason,
            )
        if body.commit_id is not None:
            assert body.expected_commit_id is not None
            quality_service.require_gate_at(conn, user, dataset_id, name, body.commit_id)
            out = service.move_branch(
                conn,
                dataset_id=dataset_id,
                name=name,
                to=body.commit_id,
                expected=body.expected_commit_id,
                by=user.username,
                reason=body.reason,
            )
        return out


@router.delete("/datasets/{dataset_id}/branches/{name:path}", status_code=204)
def delete_branch(
    dataset_id: uuid.UUID,
    name: str,
    expected_commit_id: str | None = Query(None, min_length=7, max_length=64),
    reason: str = Query("", max_length=1000),
    user: User = Depends(current_user),
) -> Response:
    with transaction() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "write")
        service.delete_branch(
            conn,
            dataset_id=dataset_id,
            name=name,
            default_branch=ds["default_branch"],
            by=user.username,
            reason=reason,
            expected=expected_commit_id,
        )
    return Response(status_code=204)


@router.delete("/datasets/{dataset_id}/tags/{name:path}", status_code=204)
def delete_tag(
    dataset_id: uuid.UUID,
    name: str,
    reason: str = Query("", max_length=1000),
    user: User = Depends(current_user),
) -> Response:
    with transaction() as conn:
        datasets_service.require(conn, user, dataset_id, "admin")  # tags stay put for writers
        service.delete_tag(conn, dataset_id=dataset_id, name=name, by=user.username, reason=reason)
    return Response(status_code=204)


@router.get("/datasets/{dataset_id}/refs/{name:path}/log", response_model=RefLog)
def ref_log(
    request: Request,
    dataset_id: uuid.UUID,
    name: str,
    page: int = Query(1, ge=1),
    per_page: int = Query(50, ge=1, le=500),
    user: User | None = Depends(optional_user),
) -> dict[str, Any]:
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "read")
        rows, total = service.log(
            conn, dataset_id, name, offset=(page - 1) * per_page, limit=per_page
        )
    nxt = None
    if page * per_page < total:
        nxt = str(request.url.include_query_params(page=page + 1, per_page=per_page))
    return {
        "items": rows,
        "total": total,
        "page": page,
        "per_page": per_page,
        "links": {"next": nxt},
    }

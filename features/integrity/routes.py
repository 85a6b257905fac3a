"""``POST /api/v1/admin/fsck`` and ``/gc``: an administrator's check of the
stored data, and garbage collection, as jobs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from core.db import read, transaction
from features.auth import service as auth_service
from features.auth.service import User, current_user
from features.integrity import service

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


class FsckRequest(BaseModel):
    deep: bool = Field(False, description="also re-hash every row of every chunk")
    dataset: str | None = Field(None, description="only this dataset (name or id)")


class FsckAccepted(BaseModel):
    job_id: Any
    links: dict[str, str]


@router.post("/fsck", status_code=202, response_model=FsckAccepted)
def start_fsck(
    body: FsckRequest, response: Response, user: User = Depends(current_user)
) -> FsckAccepted:
    """Check that what is stored is whole (``dsa fsck``); the finished job's
    ``result`` is the report: ``summary`` and ``problems``."""
    auth_service.require_admin(user)
    with read() as conn:
        dataset_id = service.dataset_id(conn, body.dataset) if body.dataset else None
    with transaction() as conn:
        job_id = service.submit(
            conn, user, "fsck", {"deep": body.deep, "dataset": body.dataset}, dataset_id=dataset_id
        )
    response.headers["Location"] = f"/api/v1/jobs/{job_id}"
    return FsckAccepted(job_id=job_id, links={"job": f"/api/v1/jobs/{job_id}"})


class GcRequest(BaseModel):
    grace_seconds: float | None = Field(
        None, description="keep unreferenced objects younger than this (default DSA_GC_GRACE)"
    )
    dry_run: bool = Field(False, description="report what would go; change nothing")
    force: bool = Field(False, description="allow a grace period under 10 minutes")


@router.post("/gc", status_code=202, response_model=FsckAccepted)
def start_gc(
    body: GcRequest, response: Response, user: User = Depends(current_user)
) -> FsckAccepted:
    """Reclaim what nothing references (``dsa gc``); the finished job's
    ``result`` is the report: ``summary`` (``deleted_objects``,
    ``freed_bytes``, ``kept_objects``) and the details. 422 for a grace
    period under 10 minutes without ``force``."""
    auth_service.require_admin(user)
    if body.grace_seconds is not None:
        service.check_grace(body.grace_seconds, body.force)
    with transaction() as conn:
        job_id = service.submit(conn, user, "gc", body.model_dump())
    response.headers["Location"] = f"/api/v1/jobs/{job_id}"
    return FsckAccepted(job_id=job_id, links={"job": f"/api/v1/jobs/{job_id}"})

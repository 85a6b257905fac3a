from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends

from core.db import read, transaction
from features.auth.service import User, current_user, optional_user
from features.datasets import service as datasets_service
from features.quality import service
from features.quality.models import QualityConfig, QualityConfigOut, QualityReport

router = APIRouter(prefix="/api/v1", tags=["quality"])


@router.put("/datasets/{dataset_id}/quality", response_model=QualityConfigOut)
def put_config(
    dataset_id: uuid.UUID, body: QualityConfig, user: User = Depends(current_user)
) -> QualityConfigOut:
    """Replace the dataset's rules, threshold and gated branches (admin role)."""
    with transaction() as conn:
        datasets_service.require(conn, user, dataset_id, "admin")
        row = service.put_config(conn, dataset_id, body.model_dump(), by=user.username)
    return QualityConfigOut(**row)


@router.get("/datasets/{dataset_id}/quality", response_model=QualityConfigOut)
def get_config(
    dataset_id: uuid.UUID, user: User | None = Depends(optional_user)
) -> QualityConfigOut:
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "read")
        return QualityConfigOut(**service.config(conn, dataset_id))


@router.get("/datasets/{dataset_id}/refs/{ref:path}/quality", response_model=QualityReport)
def report(
    dataset_id: uuid.UUID, ref: str, user: User | None = Depends(optional_user)
) -> QualityReport:
    """The quality report of the commit at ``ref``: computed once per commit
    and version of the rules."""
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "read")
        return QualityReport(**service.report_at(conn, dataset_id, ref))

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends

from core.db import read
from features.auth.service import User, optional_user
from features.datasets import service as datasets_service
from features.stats import service
from features.stats.models import TableStats

router = APIRouter(prefix="/api/v1", tags=["reading"])


@router.get("/datasets/{dataset_id}/refs/{ref:path}/stats", response_model=TableStats)
def stats(
    dataset_id: uuid.UUID,
    ref: str,
    table: str | None = None,
    user: User | None = Depends(optional_user),
) -> TableStats:
    """Column statistics of a table at a ref: computed after each import
    (and at the first request for a version that has none yet)."""
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "read")
        return TableStats.model_validate(service.table_stats(conn, dataset_id, ref, table))

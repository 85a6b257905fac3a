from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends

from core.db import transaction
from core.errors import NotFound
from features.auth.service import User, current_user
from features.datasets import service as datasets_service
from features.jobs import service

router = APIRouter(prefix="/api/v1", tags=["jobs"])


@router.get("/jobs/{job_id}")
def get_job(job_id: uuid.UUID, user: User = Depends(current_user)) -> dict[str, Any]:
    with transaction() as conn:
        row = service.get(conn, job_id)
        try:
            datasets_service.require(conn, user, row["dataset_id"], "read")
        except NotFound:  # a job of a dataset the caller cannot see does not exist for it
            raise NotFound(f"job {job_id} does not exist", code="job_not_found") from None
    return service.to_out(row)

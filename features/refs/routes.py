from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends

from core.db import transaction
from features.auth.service import User, optional_user
from features.datasets import service as datasets_service
from features.refs import service

router = APIRouter(prefix="/api/v1", tags=["refs"])


@router.get("/datasets/{dataset_id}/refs")
def list_refs(dataset_id: uuid.UUID, user: User | None = Depends(optional_user)) -> dict[str, Any]:
    with transaction() as conn:
        datasets_service.require(conn, user, dataset_id, "read")
        return {"items": service.list_refs(conn, dataset_id)}

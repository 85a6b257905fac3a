from __future__ import annotations

import uuid

import orjson
from fastapi import APIRouter, Query, Request, Response

from core.db import read
from features.auth.service import optional_user
from features.compare import service
from features.compare.models import Comparison
from features.datasets import service as datasets_service

router = APIRouter(prefix="/api/v1", tags=["compare"])


# Answered with bytes it serialises itself (orjson), like data pages: the model
# describes them in /openapi.json, tests/api/test_response_shapes.py checks them.
@router.get("/datasets/{dataset_id}/compare/{spec:path}", response_model=Comparison)
def compare(
    request: Request,
    dataset_id: uuid.UUID,
    spec: str,
    table: str | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=0, le=service.MAX_LIMIT),
    stats: bool = Query(False, description="add stats_diff: how each column's statistics moved"),
) -> Response:
    """Rows and columns that differ between two refs (``base...head``).
    ``limit=0`` gives the summary and schema diff alone."""
    user = optional_user(request)
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "read")
        body = service.compare(conn, ds, spec, table=table, offset=offset, limit=limit, stats=stats)
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")

from __future__ import annotations

import uuid

import orjson
from fastapi import APIRouter, Depends, Query, Request, Response

from core.db import read
from features.auth.service import User, optional_user
from features.data import service
from features.data.models import DataPage, TableList
from features.datasets import service as datasets_service

router = APIRouter(prefix="/api/v1", tags=["reading"])


@router.get("/datasets/{dataset_id}/refs/{ref:path}/tables", response_model=TableList)
def tables(
    dataset_id: uuid.UUID,
    ref: str,
    digest: bool = Query(
        False, description="compute each table's content digest if not known yet (a scan)"
    ),
    user: User | None = Depends(optional_user),
) -> TableList:
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "read")
        return TableList.model_validate(service.tables(conn, dataset_id, ref, digest=digest))


# The hot read path answers with bytes it serialises itself (orjson): the
# model describes them in /openapi.json and tests/api/test_response_shapes.py
# checks that they match it.
@router.get("/datasets/{dataset_id}/refs/{ref:path}/data", response_model=DataPage)
def data(
    request: Request,
    dataset_id: uuid.UUID,
    ref: str,
    table: str | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=0, le=service.MAX_LIMIT),
    columns: str | None = None,
    filter: str | None = Query(None, max_length=8192),
    sort: str | None = Query(None, max_length=2048),
) -> Response:
    """A page of rows. The hot read path: orjson, and the caller is read from
    the request here rather than through a dependency (measured ~0.5 ms less)."""
    user = optional_user(request)
    cols = [c for c in columns.split(",") if c] if columns else None
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "read")
        body = service.page(
            conn,
            dataset_id,
            ref,
            table=table,
            offset=offset,
            limit=limit,
            columns=cols,
            filter=filter,
            sort=sort,
        )
    # OPT_UTC_Z: zoned datetimes end in "Z"; naive ones stay naive
    return Response(orjson.dumps(body, option=orjson.OPT_UTC_Z), media_type="application/json")

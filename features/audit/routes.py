"""``GET /api/v1/audit`` and ``GET /api/v1/audit/export``: installation
administrators read the whole log; a dataset's admins read that dataset's
entries (``dataset=`` required)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from core.db import read
from features.audit import service
from features.audit.models import AuditPage
from features.auth.errors import AdminRequired
from features.auth.service import User, current_user
from features.datasets import service as datasets_service
from features.datasets.errors import DatasetNotFound

router = APIRouter(prefix="/api/v1", tags=["audit"])


def _filter(
    user: User,
    dataset: str | None,
    actor: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
) -> service.Filter:
    """The caller's filter, narrowed to what they may read."""
    dataset_id = None
    with read() as conn:
        if dataset:
            dataset_id = _dataset_id(conn, dataset)
            if not user.is_admin:
                datasets_service.require(conn, user, dataset_id, "admin")
        elif not user.is_admin:
            raise AdminRequired(
                "only administrators read the whole audit log; a dataset's admins "
                "read its entries with dataset=<id>"
            )
    return service.Filter(dataset_id, actor, action, since, until)


def _dataset_id(conn: Any, dataset: str) -> uuid.UUID:
    try:
        return uuid.UUID(dataset)
    except ValueError:
        pass
    live = [d for d in datasets_service.every(conn, dataset) if d["deleted_at"] is None]
    if not live:
        raise DatasetNotFound(f"dataset {dataset!r} does not exist")
    return uuid.UUID(str(live[0]["id"]))


@router.get("/audit", response_model=AuditPage)
def audit(
    request: Request,
    dataset: str | None = Query(None, max_length=200),
    actor: str | None = Query(None, max_length=200),
    action: str | None = Query(None, max_length=100),
    since: datetime | None = None,
    until: datetime | None = None,
    page: int = Query(1, ge=1),
    per_page: int = Query(50, ge=1, le=500),
    user: User = Depends(current_user),
) -> dict[str, Any]:
    where = _filter(user, dataset, actor, action, since, until)
    with read() as conn:
        items, total = service.entries(conn, where, page=page, per_page=per_page)
    nxt = None
    if page * per_page < total:
        nxt = str(request.url.include_query_params(page=page + 1, per_page=per_page))
    return {
        "items": items,
        "total": total,
        "page": page,
        "per_page": per_page,
        "links": {"next": nxt},
    }


@router.get("/audit/export", response_class=StreamingResponse)
def export(
    dataset: str | None = Query(None, max_length=200),
    actor: str | None = Query(None, max_length=200),
    action: str | None = Query(None, max_length=100),
    since: datetime | None = None,
    until: datetime | None = None,
    user: User = Depends(current_user),
) -> StreamingResponse:
    where = _filter(user, dataset, actor, action, since, until)
    return StreamingResponse(
        service.export_ndjson(where),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="audit.ndjson"'},
    )

"""A dataset's Activity tab: its audit log entries, newest first, for the
dataset's admins (and installation administrators), with a link to the
NDJSON export (``GET /api/v1/audit/export?dataset=…``)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Request, Response

from core.db import read
from features.audit import service
from features.datasets import service as datasets_service
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)
PER_PAGE = 50


@router.get("/datasets/{dataset_id}/activity")
def activity(
    request: Request,
    dataset_id: uuid.UUID,
    page: int = Query(1, ge=1, le=1_000_000),
    action: str | None = Query(None, max_length=100),
) -> Response:
    user = web.require_user(request)
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "read")  # 404 before 403
        ds = datasets_service.require(conn, user, dataset_id, "admin")
        where = service.Filter(dataset_id=dataset_id, action=action or None)
        rows, total = service.entries(conn, where, page=page, per_page=PER_PAGE)
    return web.render(
        request,
        "audit/activity.html",
        dataset=ds,
        tab="activity",
        entries=rows,
        action=action or "",
        page=page,
        pages=max(1, -(-total // PER_PAGE)),
        total=total,
    )

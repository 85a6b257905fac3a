"""Merging one ref into a branch from the web: conflicts listed clearly."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Form, Request, Response

from core.db import read, transaction
from core.errors import Conflict, DsaError
from features.datasets import service as datasets_service
from features.merges import service
from features.refs import service as refs_service
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)


def _render(
    request: Request,
    dataset_id: uuid.UUID,
    form: dict[str, str],
    *,
    error: DsaError | None = None,
    result: dict[str, Any] | None = None,
) -> Response:
    user = web.require_user(request)
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "read")
        refs = refs_service.list_refs(conn, dataset_id)
    problem = error.to_problem() if error else None
    return web.render(
        request,
        "merges/merge.html",
        status=error.status if error else 200,
        dataset=ds,
        tab="refs",
        ref=None,
        refs=refs,
        branches=[r for r in refs if r["kind"] == "branch"],
        form=form,
        problem=problem,
        conflicts=(problem or {}).get("conflicts") or [],
        result=result,
    )


@router.get("/datasets/{dataset_id}/merge")
def merge_page(
    request: Request, dataset_id: uuid.UUID, source: str = "", target: str = ""
) -> Response:
    form = {"source": source, "target": target, "message": "", "strategy": "fail"}
    return _render(request, dataset_id, form)


@router.post("/datasets/{dataset_id}/merge")
def merge(
    request: Request,
    dataset_id: uuid.UUID,
    source: str = Form(""),
    target: str = Form(""),
    message: str = Form(""),
    strategy: str = Form("fail"),
    expected_target: str = Form(""),
    csrf: str = Form(""),
) -> Response:
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    form = {"source": source, "target": target, "message": message, "strategy": strategy}
    try:
        with transaction() as conn:
            ds = datasets_service.require_branch(conn, user, dataset_id, target.strip())
        out = service.merge(
            ds,
            source=source.strip(),
            target=target.strip(),
            by=user.username,
            message=message.strip() or None,
            expected_target=expected_target or None,
            strategy=strategy,
        )
    except (Conflict, DsaError) as err:
        if err.status not in (400, 404, 409, 422):
            raise
        return _render(request, dataset_id, form, error=err)
    return _render(request, dataset_id, form, result=out)

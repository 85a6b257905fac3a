"""The compare page: pick base and head; schema changes, summary counts, and
the changed rows with changed cells highlighted (old → new), paginated; a
permalink with both commit ids reproduces the view."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Request, Response

from core.db import read
from features.compare import present, service
from features.datasets import service as datasets_service
from features.refs import service as refs_service
from features.stats import service as stats_service
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)


@router.get("/datasets/{dataset_id}/compare")
def pick(
    request: Request,
    dataset_id: uuid.UUID,
    base: str | None = None,
    head: str | None = None,
    table: str | None = None,
) -> Response:
    """The picker; with both refs chosen, the canonical ``/compare/base...head`` URL."""
    user = web.current_user(request)
    if base and head:
        return web.redirect(
            web.url(f"/datasets/{dataset_id}/compare/{base.strip()}...{head.strip()}", table=table)
        )
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "read")
        refs = refs_service.list_refs(conn, dataset_id)
    return web.render(
        request,
        "compare/compare.html",
        dataset=ds,
        tab="compare",
        refs=refs,
        base=base or "",
        head=head or "",
        diff=None,
        spec=None,
    )


@router.get("/datasets/{dataset_id}/compare/{spec:path}")
def compare(
    request: Request,
    dataset_id: uuid.UUID,
    spec: str,
    table: str | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=500),
) -> Response:
    user = web.current_user(request)
    base, _, head = spec.partition("...")
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "read")
        refs = refs_service.list_refs(conn, dataset_id)
        diff = service.compare(conn, ds, spec, table=table, offset=offset, limit=limit, stats=True)
    stats_diff = [
        {**d, "overlay": stats_service.overlay(d["base"], d["head"])}
        for d in diff.get("stats_diff") or []
    ]
    page_url = f"/datasets/{dataset_id}/compare/{spec}"
    permalink = web.url(
        f"/datasets/{dataset_id}/compare/{diff['base_commit_id']}...{diff['head_commit_id']}",
        table=diff["table"],
        offset=offset or None,
        limit=limit if limit != 100 else None,
    )
    return web.render(
        request,
        "compare/compare.html",
        dataset=ds,
        tab="compare",
        refs=refs,
        base=base,
        head=head,
        spec=spec,
        diff=diff,
        stats_diff=stats_diff,
        changes=present.changes_grid(diff),
        page_url=page_url,
        permalink=permalink,
        swap=web.url(f"/datasets/{dataset_id}/compare/{head}...{base}", table=diff["table"]),
        offset=offset,
        limit=limit,
    )

"""The statistics page of a table: a card per column with its figures and a
histogram or top-values chart."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response

from core.db import read
from core.objects import get_commit
from core.storage import get_store
from features.commits import service as commits_service
from features.datasets import service as datasets_service
from features.refs import service as refs_service
from features.stats import service
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)


@router.get("/datasets/{dataset_id}/stats")
def table_stats(
    request: Request, dataset_id: uuid.UUID, ref: str | None = None, table: str | None = None
) -> Response:
    user = web.current_user(request)
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "read")
        ref = ref or ds["default_branch"]
        commit_id = refs_service.resolve(conn, dataset_id, ref)
        commit = get_commit(get_store(), commit_id)
        names = sorted(commit.tables)
        if table is None and names:
            table = names[0]
        stats = service.table_stats(conn, dataset_id, commit_id, table) if names else None
        meta = commits_service.get(conn, dataset_id, commit_id)
    columns = [{**c, "bars": service.bars(c)} for c in (stats or {}).get("columns", [])]
    return web.render(
        request,
        "stats/table.html",
        dataset=ds,
        tab="data",
        ref=ref,
        commit=meta,
        commit_id=commit_id,
        tables=names,
        table=table,
        stats=stats,
        columns=columns,
    )

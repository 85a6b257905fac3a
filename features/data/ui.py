"""The dataset home page: a ref switcher, a tab per table, a data grid with
typed columns, pagination (jump to row), column selection and the filter box."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from fastapi import APIRouter, Query, Request, Response
from markupsafe import Markup

from core.db import read
from core.errors import DsaError
from features.commits import service as commits_service
from features.data import present, service
from features.data.errors import TableNotFound
from features.datasets import service as datasets_service
from features.refs import service as refs_service
from features.stats import service as stats_service
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)
LIMITS = (25, 50, 100, 250, 500)


@router.get("/datasets/{dataset_id}")
def home(
    request: Request,
    dataset_id: uuid.UUID,
    ref: str | None = None,
    table: str | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=500),
    row: int | None = Query(None, ge=1, description="jump to this row (1-based)"),
    col: list[str] | None = Query(None),
    filter: str | None = None,
    sort: str | None = None,
) -> Response:
    user = web.current_user(request)
    if row is not None:
        offset = row - 1
    filter = (filter or "").strip() or None
    sort = (sort or "").strip() or None
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "read")
        ref = ref or ds["default_branch"]
        refs = refs_service.list_refs(conn, dataset_id)
        listing = service.tables(conn, dataset_id, ref)
        commit_id = listing["commit_id"]
        commit = commits_service.get(conn, dataset_id, commit_id)
        tables = listing["items"]
        current = next((t for t in tables if t["name"] == table), tables[0] if tables else None)
        if table is not None and (current is None or current["name"] != table):
            raise TableNotFound(f"table {table!r} does not exist at {ref}")
        page, problem = _read_page(
            conn, dataset_id, commit_id, current, col, offset, limit, filter, sort
        )
        # column header charts from statistics computed already (never computed here)
        known = stats_service.known_at(conn, commit_id, current["name"]) if current else None
    sparks = {c["name"]: stats_service.bars(c) for c in (known or {}).get("columns", [])}
    types = {c["name"]: c["type"] for c in current["columns"]} if current else {}
    total = page["total_rows"] if page else 0
    return web.render(
        request,
        "data/home.html",
        dataset=ds,
        tab="data",
        ref=ref,
        refs=refs,
        is_branch=any(r["name"] == ref and r["kind"] == "branch" for r in refs),
        commit=commit,
        commit_id=commit_id,
        tables=tables,
        table=current,
        page=page,
        grid=present.grid(page, offset + 1),
        types=types,
        numeric=present.NUMERIC,
        selected=set(col or []),
        offset=offset,
        limit=limit,
        limits=LIMITS,
        total=total,
        last_offset=max(0, (total - 1) // limit * limit) if total else 0,
        filter=filter or "",
        sort=sort or "",
        problem=problem,
        cols=col or [],
        sparks=sparks,
        readme=Markup(datasets_service.readme_html(ds)),  # sanitised by nh3
    )


def _read_page(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    commit_id: str,
    table: dict[str, Any] | None,
    col: list[str] | None,
    offset: int,
    limit: int,
    filter: str | None,
    sort: str | None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The page of rows to show and, for a bad filter or sort, its problem
    (shown above the grid, the rest of the page kept)."""
    if table is None:
        return None, None
    all_columns = [c["name"] for c in table["columns"]]
    chosen = [c for c in (col or []) if c in all_columns] or None
    try:
        page = service.page(
            conn,
            dataset_id,
            commit_id,
            table=table["name"],
            offset=offset,
            limit=limit,
            columns=chosen,
            filter=filter,
            sort=sort,
        )
    except DsaError as err:
        if err.status not in (400, 422) or not (filter or sort):
            raise
        return None, err.to_problem()
    return page, None

"""History with a branch/merge graph, and the commit page (provenance, tables,
changes against the first parent)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from markupsafe import Markup

from core.db import read
from core.objects import get_commit, get_schema
from core.storage import get_store
from features.commits import service
from features.compare import present as compare_present
from features.compare import service as compare_service
from features.data.errors import TableRequired
from features.datasets import service as datasets_service
from features.quality import service as quality_service
from features.refs import service as refs_service
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)
PER_PAGE = 50
LANE_W, ROW_H, DOT_R = 14, 44, 4.5
COLORS = ("#0969da", "#8250df", "#1a7f37", "#bf3989", "#9a6700", "#cf222e", "#0550ae")


def graph_rows(commits: list[dict[str, Any]]) -> list[Markup]:
    """One small SVG per history row drawing the lanes through it: the
    commit's dot, lines from its children above and to its parents below.
    Commits come newest first, a commit before its parents; a parent off the
    page keeps its lane running to the bottom."""
    lanes: list[str | None] = []
    out = []
    for c in commits:
        cid = c["id"]
        before = list(lanes)
        if cid in lanes:
            col = lanes.index(cid)
        elif None in lanes:
            col = lanes.index(None)
        else:
            col = len(lanes)
            lanes.append(None)
        for i, v in enumerate(lanes):
            if v == cid:
                lanes[i] = None
        parents = list(c["parents"])
        lanes[col] = parents[0] if parents else None
        merges_to: list[int] = []
        for p in parents[1:]:
            if p in lanes:
                merges_to.append(lanes.index(p))
            else:
                j = lanes.index(None) if None in lanes else len(lanes)
                if j == len(lanes):
                    lanes.append(None)
                lanes[j] = p
                merges_to.append(j)
        while lanes and lanes[-1] is None:
            lanes.pop()
        width = max(len(before), len(lanes), col + 1)
        mid = ROW_H / 2

        def x(i: int) -> float:
            return LANE_W / 2 + i * LANE_W

        parts = []
        for i, v in enumerate(before):
            if v is None:
                continue
            color = COLORS[i % len(COLORS)]
            if v == cid:  # a child's line ends at this commit
                parts.append(_line(x(i), 0, x(col), mid, color))
            elif i < len(lanes) and lanes[i] == v:  # passes straight through
                parts.append(_line(x(i), 0, x(i), ROW_H, color))
        if parents:
            parts.append(_line(x(col), mid, x(col), ROW_H, COLORS[col % len(COLORS)]))
        for j in merges_to:
            parts.append(_line(x(col), mid, x(j), ROW_H, COLORS[j % len(COLORS)]))
        color = COLORS[col % len(COLORS)]
        merge = len(parents) > 1
        parts.append(
            f'<circle cx="{x(col)}" cy="{mid}" r="{DOT_R}" fill="{"var(--bg)" if merge else color}"'
            f' stroke="{color}" stroke-width="2.5"/>'
        )
        w = width * LANE_W
        out.append(
            Markup(
                f'<svg width="{w}" height="{ROW_H}" viewBox="0 0 {w} {ROW_H}" aria-hidden="true"'
                f' focusable="false">{"".join(parts)}</svg>'
            )
        )
    return out


def _line(x1: float, y1: float, x2: float, y2: float, color: str) -> str:
    if x1 == x2:
        return f'<path d="M{x1} {y1}V{y2}" stroke="{color}" stroke-width="2" fill="none"/>'
    # a curve from a branch point to another lane
    ym = (y1 + y2) / 2
    return (
        f'<path d="M{x1} {y1}C{x1} {ym} {x2} {ym} {x2} {y2}" stroke="{color}"'
        ' stroke-width="2" fill="none"/>'
    )


@router.get("/datasets/{dataset_id}/history")
def history(
    request: Request,
    dataset_id: uuid.UUID,
    ref: str | None = None,
    page: int = Query(1, ge=1, le=1_000_000),
    first_parent: bool = False,
) -> Response:
    user = web.current_user(request)
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "read")
        ref = ref or ds["default_branch"]
        head = refs_service.resolve(conn, dataset_id, ref)
        rows, total = service.history(
            conn,
            dataset_id,
            head,
            offset=(page - 1) * PER_PAGE,
            limit=PER_PAGE,
            all_parents=not first_parent,
        )
        refs = refs_service.list_refs(conn, dataset_id)
        # quality badges: reports computed already (never computed for the page)
        rules = quality_service.config(conn, dataset_id)
        scores = quality_service.remembered(conn, dataset_id, [c["id"] for c in rows], rules)
    at: dict[str, list[dict[str, Any]]] = {}
    for r in refs:
        at.setdefault(r["commit_id"], []).append(r)
    return web.render(
        request,
        "commits/history.html",
        dataset=ds,
        tab="history",
        ref=ref,
        refs=refs,
        head=head,
        commits=rows,
        graph=graph_rows(rows),
        refs_at=at,
        scores=scores,
        page=page,
        pages=max(1, -(-total // PER_PAGE)),
        total=total,
        first_parent=first_parent,
    )


@router.get("/datasets/{dataset_id}/commits/{commit_ref}")
def commit_page(
    request: Request,
    dataset_id: uuid.UUID,
    commit_ref: str,
    table: str | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=500),
) -> Response:
    user = web.current_user(request)
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "read")
        commit_id = refs_service.resolve(conn, dataset_id, commit_ref)
        row = service.get(conn, dataset_id, commit_id)
        parent = row["parents"][0] if row["parents"] else None
        rules = quality_service.config(conn, dataset_id)
        # the report if computed (by the worker after a move, or the API): never here
        quality = quality_service.remembered(conn, dataset_id, [commit_id], rules).get(commit_id)
        refs = [r for r in refs_service.list_refs(conn, dataset_id) if r["commit_id"] == commit_id]
        store = get_store()
        commit = get_commit(store, commit_id)
        tables = [
            {
                "name": name,
                "row_count": t.row_count,
                "columns": [c.to_json() for c in get_schema(store, t.schema).columns],
            }
            for name, t in sorted(commit.tables.items())
        ]
        diff = None
        problem = None
        if parent is not None:
            spec = f"{parent}...{commit_id}"
            try:
                diff = compare_service.compare(
                    conn, ds, spec, table=table, offset=offset, limit=limit
                )
            except TableRequired as err:
                # several tables changed: show the first changed one
                statuses = err.extra.get("tables") or []
                pick = next(
                    (n for n in statuses if _changed(conn, ds, spec, n)),
                    statuses[0] if statuses else None,
                )
                if pick is None:
                    problem = err.to_problem()
                else:
                    diff = compare_service.compare(
                        conn, ds, spec, table=pick, offset=offset, limit=limit
                    )
    return web.render(
        request,
        "commits/commit.html",
        dataset=ds,
        tab="history",
        ref=None,
        commit=row,
        commit_id=commit_id,
        parent=parent,
        refs=refs,
        tables=tables,
        provenance=commit.provenance,
        quality=quality,
        diff=diff,
        changes=compare_present.changes_grid(diff),
        problem=problem,
        offset=offset,
        limit=limit,
        compare_base=f"/datasets/{dataset_id}/commits/{commit_id}",
    )


def _changed(conn: Any, ds: dict[str, Any], spec: str, table: str) -> bool:
    s = compare_service.compare(conn, ds, spec, table=table, offset=0, limit=0)
    return any(s["summary"][k] for k in ("added", "removed", "modified"))

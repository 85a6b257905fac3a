from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from core.db import read
from core.models import Links
from core.objects import get_commit, get_schema
from core.storage import get_store
from features.auth.service import User, optional_user
from features.commits import service
from features.commits.models import CommitDetail, CommitPage, CommitSummary, MergeBase
from features.datasets import service as datasets_service
from features.refs import service as refs_service

router = APIRouter(prefix="/api/v1", tags=["history"])


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "parents": row["parents"],
        "message": row["message"],
        "author": row["author"],
        "created_at": row["created_at"],
        "stats": {"tables": row["table_count"], "rows": row["row_count"]},
    }


@router.get("/datasets/{dataset_id}/commits", response_model=CommitPage)
def history(
    request: Request,
    dataset_id: uuid.UUID,
    ref: str | None = None,
    all_parents: bool = Query(False, alias="all"),
    page: int = Query(1, ge=1),
    per_page: int = Query(50, ge=1, le=500),
    user: User | None = Depends(optional_user),
) -> CommitPage:
    """First-parent history from ``ref``, newest first; ``all=true``: every
    ancestor through all parents, in topological order."""
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "read")
        head = refs_service.resolve(conn, dataset_id, ref or ds["default_branch"])
        rows, total = service.history(
            conn,
            dataset_id,
            head,
            offset=(page - 1) * per_page,
            limit=per_page,
            all_parents=all_parents,
        )
    nxt = None
    if page * per_page < total:
        nxt = str(request.url.include_query_params(page=page + 1, per_page=per_page))
    return CommitPage(
        items=[CommitSummary.model_validate(_summary(r)) for r in rows],
        total=total,
        page=page,
        per_page=per_page,
        head=head,
        links=Links(next=nxt),
    )


@router.get("/datasets/{dataset_id}/commits/{commit_ref}", response_model=CommitDetail)
def commit_detail(
    dataset_id: uuid.UUID, commit_ref: str, user: User | None = Depends(optional_user)
) -> CommitDetail:
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "read")
        commit_id = refs_service.resolve(conn, dataset_id, commit_ref)
        row = service.get(conn, dataset_id, commit_id)
    store = get_store()
    commit = get_commit(store, commit_id)
    tables = [
        {
            "name": name,
            "row_count": t.row_count,
            "schema_id": t.schema,
            "manifest_id": t.manifest,
            "columns": [c.to_json() for c in get_schema(store, t.schema).columns],
        }
        for name, t in sorted(commit.tables.items())
    ]
    return CommitDetail.model_validate(
        {**_summary(row), "tables": tables, "provenance": commit.provenance}
    )


@router.get("/datasets/{dataset_id}/merge-base/{spec:path}", response_model=MergeBase)
def merge_base(
    dataset_id: uuid.UUID, spec: str, user: User | None = Depends(optional_user)
) -> MergeBase:
    """The best common ancestor of two refs, ``a...b``: ``{merge_base, a, b}``."""
    with read() as conn:
        datasets_service.require(conn, user, dataset_id, "read")
        a, b = refs_service.resolve_range(conn, dataset_id, spec)
        base = service.merge_base(conn, dataset_id, a, b)
    return MergeBase(merge_base=base, a=a, b=b)

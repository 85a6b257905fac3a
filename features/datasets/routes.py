from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Query, Request, Response

from core.db import transaction
from core.models import Links
from features.auth.service import User, current_user, optional_user, require_admin
from features.datasets import catalog, service
from features.datasets.models import (
    DatasetCreate,
    DatasetList,
    DatasetOut,
    DatasetPatch,
    PermissionIn,
    PermissionList,
    PermissionOut,
    SearchPage,
    Storage,
    Visibility,
)

router = APIRouter(prefix="/api/v1", tags=["datasets"])


@router.post("/datasets", response_model=DatasetOut, status_code=201)
def create(body: DatasetCreate, user: User = Depends(current_user)) -> DatasetOut:
    with transaction() as conn:
        row = service.create_dataset(conn, user, **body.model_dump())
    return DatasetOut(**row)


@router.get("/datasets", response_model=DatasetList)
def list_(
    request: Request,
    q: str | None = None,
    page: int = Query(1, ge=1),
    per_page: int = Query(50, ge=1, le=500),
    user: User | None = Depends(optional_user),
) -> DatasetList:
    with transaction() as conn:
        rows, total = service.list_datasets(conn, user, q=q, page=page, per_page=per_page)
    nxt = None
    if page * per_page < total:
        nxt = str(request.url.include_query_params(page=page + 1, per_page=per_page))
    return DatasetList(
        items=[DatasetOut(**r) for r in rows],
        total=total,
        page=page,
        per_page=per_page,
        links=Links(next=nxt),
    )


@router.get("/search", response_model=SearchPage)
def search(
    request: Request,
    q: str = Query("", max_length=500, description="words; the last may be a prefix"),
    tag: list[str] | None = Query(None, description="only datasets with all these tags"),
    visibility: Visibility | None = None,
    owner: str | None = Query(None, max_length=100, description="the creator's username"),
    page: int = Query(1, ge=1),
    per_page: int = Query(20, ge=1, le=500),
    facets: bool = Query(False, description="add facets: tags, visibility, owner with counts"),
    user: User | None = Depends(optional_user),
) -> SearchPage:
    """Datasets the caller may read, ranked by full-text search over names,
    descriptions, tags, readmes and their default branch's table and column
    names; each with what matched; and the facets of every match."""
    with transaction() as conn:
        body = catalog.search(
            conn,
            user,
            q=q,
            tags=tag,
            visibility=visibility,
            owner=owner,
            page=page,
            per_page=per_page,
            with_facets=facets,
        )
    nxt = None
    if page * per_page < body["total"]:
        nxt = str(request.url.include_query_params(page=page + 1, per_page=per_page))
    return SearchPage(**body, links=Links(next=nxt))


@router.get("/datasets/{dataset_id}", response_model=DatasetOut)
def get(dataset_id: uuid.UUID, user: User | None = Depends(optional_user)) -> DatasetOut:
    with transaction() as conn:
        ds = service.require(conn, user, dataset_id, "read")
        return DatasetOut(**ds, storage=Storage(**service.storage(conn, dataset_id)))


@router.patch("/datasets/{dataset_id}", response_model=DatasetOut)
def patch(
    dataset_id: uuid.UUID, body: DatasetPatch, user: User = Depends(current_user)
) -> DatasetOut:
    with transaction() as conn:
        service.require(conn, user, dataset_id, "admin")
        row = service.update_dataset(
            conn, dataset_id, body.model_dump(exclude_unset=True), actor=user
        )
    return DatasetOut(**row)


@router.delete("/datasets/{dataset_id}", status_code=204)
def delete(dataset_id: uuid.UUID, user: User = Depends(current_user)) -> Response:
    with transaction() as conn:
        service.require(conn, user, dataset_id, "admin")
        service.delete_dataset(conn, dataset_id, actor=user)
    return Response(status_code=204)


@router.post("/datasets/{dataset_id}/restore", response_model=DatasetOut)
def restore(dataset_id: uuid.UUID, user: User = Depends(current_user)) -> DatasetOut:
    """Bring back a deleted dataset (installation admins) until garbage
    collection purges it, ``DSA_DELETED_RETENTION`` after its deletion."""
    require_admin(user)
    with transaction() as conn:
        row = service.restore_dataset(conn, dataset_id, actor=user)
    return DatasetOut(**row)


@router.get("/datasets/{dataset_id}/permissions", response_model=PermissionList)
def permissions(dataset_id: uuid.UUID, user: User = Depends(current_user)) -> PermissionList:
    with transaction() as conn:
        service.require(conn, user, dataset_id, "admin")  # who holds a role is the admins' business
        rows = service.list_permissions(conn, dataset_id)
    return PermissionList(items=[PermissionOut(**r) for r in rows])


@router.put("/datasets/{dataset_id}/permissions/{username}", response_model=PermissionOut)
def grant(
    dataset_id: uuid.UUID, username: str, body: PermissionIn, user: User = Depends(current_user)
) -> PermissionOut:
    with transaction() as conn:
        service.require(conn, user, dataset_id, "admin")
        return PermissionOut(**service.grant(conn, dataset_id, username, body.role, actor=user))


@router.delete("/datasets/{dataset_id}/permissions/{username}", status_code=204)
def revoke(dataset_id: uuid.UUID, username: str, user: User = Depends(current_user)) -> Response:
    with transaction() as conn:
        service.require(conn, user, dataset_id, "admin")
        service.revoke(conn, dataset_id, username, actor=user)
    return Response(status_code=204)

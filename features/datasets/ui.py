"""Web pages of datasets: the list with search, creating one, settings and permissions."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Form, Query, Request, Response

from core.db import read, transaction
from core.errors import DsaError
from features.datasets import service
from features.datasets.models import DatasetCreate, DatasetPatch
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)
PER_PAGE = 25


@router.get("/datasets")
def list_page(
    request: Request, q: str | None = None, page: int = Query(1, ge=1, le=100_000)
) -> Response:
    return _list(request, q=q, page=page)


def _list(
    request: Request,
    *,
    q: str | None,
    page: int = 1,
    error: DsaError | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    user = web.current_user(request)
    with read() as conn:
        rows, total = service.list_datasets(conn, user, q=q, page=page, per_page=PER_PAGE)
    return web.render(
        request,
        "datasets/list.html",
        status=error.status if error else 200,
        datasets=rows,
        total=total,
        q=q or "",
        page=page,
        pages=max(1, -(-total // PER_PAGE)),
        error=error.to_problem() if error else None,
        form=form or {"name": "", "description": "", "primary_key": "", "visibility": "private"},
    )


@router.post("/datasets")
def create(
    request: Request,
    name: str = Form(""),
    description: str = Form(""),
    primary_key: str = Form(""),
    visibility: str = Form("private"),
    csrf: str = Form(""),
) -> Response:
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    form = {
        "name": name,
        "description": description,
        "primary_key": primary_key,
        "visibility": visibility,
    }
    try:
        body = web.validated(
            DatasetCreate,
            {
                "name": name.strip(),
                "description": description,
                "primary_key": web.split_list(primary_key) or None,
                "visibility": visibility,
            },
        )
        with transaction() as conn:
            row = service.create_dataset(conn, user, **body.model_dump())
    except DsaError as err:
        if err.status not in (409, 422):
            raise
        return _list(request, q=None, error=err, form=form)
    return web.redirect(f"/datasets/{row['id']}")


@router.get("/datasets/{dataset_id}/settings")
def settings_page(request: Request, dataset_id: uuid.UUID, saved: str = "") -> Response:
    return _settings(request, dataset_id, saved=saved)


def _settings(
    request: Request, dataset_id: uuid.UUID, *, error: DsaError | None = None, saved: str = ""
) -> Response:
    user = web.require_user(request)
    with read() as conn:
        ds = service.require(conn, user, dataset_id, "read")
        perms = service.list_permissions(conn, user, dataset_id)
        is_admin = user.is_admin or any(
            p["username"] == user.username and p["role"] == "admin" for p in perms
        )
    return web.render(
        request,
        "datasets/settings.html",
        status=error.status if error else 200,
        dataset=ds,
        tab="settings",
        permissions=perms,
        can_admin=is_admin,
        error=error.to_problem() if error else None,
        saved=saved,
    )


@router.post("/datasets/{dataset_id}/settings")
def save_settings(
    request: Request,
    dataset_id: uuid.UUID,
    name: str = Form(""),
    description: str = Form(""),
    primary_key: str = Form(""),
    visibility: str = Form("private"),
    csrf: str = Form(""),
) -> Response:
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    try:
        body = web.validated(
            DatasetPatch,
            {
                "name": name.strip() or None,
                "description": description,
                "primary_key": web.split_list(primary_key) or None,
                "visibility": visibility,
            },
        )
        with transaction() as conn:
            service.update_dataset(conn, user, dataset_id, body.model_dump(exclude_unset=True))
    except DsaError as err:
        if err.status not in (409, 422):
            raise
        return _settings(request, dataset_id, error=err)
    return web.redirect(f"/datasets/{dataset_id}/settings?saved=1")


@router.post("/datasets/{dataset_id}/permissions")
def grant(
    request: Request,
    dataset_id: uuid.UUID,
    username: str = Form(""),
    role: str = Form("read"),
    csrf: str = Form(""),
) -> Response:
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    try:
        with transaction() as conn:
            service.grant(conn, user, dataset_id, username.strip(), role)
    except DsaError as err:
        if err.status not in (404, 409, 422):
            raise
        return _settings(request, dataset_id, error=err)
    return web.redirect(f"/datasets/{dataset_id}/settings")


@router.post("/datasets/{dataset_id}/permissions/{username}/delete")
def revoke(
    request: Request, dataset_id: uuid.UUID, username: str, csrf: str = Form("")
) -> Response:
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    try:
        with transaction() as conn:
            service.revoke(conn, user, dataset_id, username)
    except DsaError as err:
        if err.status not in (404, 409):
            raise
        return _settings(request, dataset_id, error=err)
    return web.redirect(f"/datasets/{dataset_id}/settings")

"""Web pages of datasets: the list with search, creating one, settings and
permissions, deleting one."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Form, Query, Request, Response

from core.db import read, transaction
from core.errors import DsaError, Forbidden
from features.datasets import catalog, present, service
from features.datasets.errors import ConfirmationRequired
from features.datasets.models import DatasetCreate, DatasetPatch
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)
PER_PAGE = 25


@router.get("/datasets")
def list_page(
    request: Request,
    q: str = Query("", max_length=500),
    tag: list[str] | None = Query(None),
    visibility: str | None = None,
    owner: str | None = Query(None, max_length=100),
    page: int = Query(1, ge=1, le=100_000),
    deleted: str = "",
) -> Response:
    return _list(
        request,
        q=q,
        filters={"tag": tag or [], "visibility": visibility or None, "owner": owner or None},
        page=page,
        deleted=deleted,
    )


def _list(
    request: Request,
    *,
    q: str | None,
    filters: dict[str, Any] | None = None,
    page: int = 1,
    error: DsaError | None = None,
    form: dict[str, str] | None = None,
    deleted: str = "",
) -> Response:
    """The dataset list: a search (every dataset the visitor may read when
    nothing is asked) with facets to narrow it and the words that matched."""
    user = web.current_user(request)
    f = filters or {"tag": [], "visibility": None, "owner": None}
    if f["visibility"] not in (None, "private", "internal", "public"):
        f["visibility"] = None
    with read() as conn:
        found = catalog.search(
            conn,
            user,
            q=q or "",
            tags=f["tag"],
            visibility=f["visibility"],
            owner=f["owner"],
            page=page,
            per_page=PER_PAGE,
            with_facets=True,
        )
    total = found["total"]
    hits = [
        {
            **h,
            "shown": [
                (m["field"], present.marked(m)) for m in h["matches"] if m["field"] != "name"
            ],
        }
        for h in found["items"]
    ]
    return web.render(
        request,
        "datasets/list.html",
        status=error.status if error else 200,
        datasets=hits,
        facets=found["facets"],
        filters=f,
        total=total,
        q=q or "",
        page=page,
        pages=max(1, -(-total // PER_PAGE)),
        error=error.to_problem() if error else None,
        form=form or {"name": "", "description": "", "primary_key": "", "visibility": "private"},
        deleted=deleted,
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
    request: Request,
    dataset_id: uuid.UUID,
    *,
    error: DsaError | None = None,
    saved: str = "",
    delete_error: DsaError | None = None,
) -> Response:
    user = web.require_user(request)
    with read() as conn:
        ds = service.require(conn, user, dataset_id, "read")
        try:
            service.require(conn, user, dataset_id, "admin")
            is_admin = True
        except Forbidden:
            is_admin = False
        perms = service.list_permissions(conn, dataset_id) if is_admin else []
        storage = service.storage(conn, dataset_id)
    shown = error or delete_error
    return web.render(
        request,
        "datasets/settings.html",
        status=shown.status if shown else 200,
        dataset=ds,
        tab="settings",
        permissions=perms,
        storage=storage,
        can_admin=is_admin,
        error=error.to_problem() if error else None,
        delete_error=delete_error.to_problem() if delete_error else None,
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
    tags: str | None = Form(None),
    readme: str | None = Form(None),
    csrf: str = Form(""),
) -> Response:
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    fields: dict[str, Any] = {
        "name": name.strip() or None,
        "description": description,
        "primary_key": web.split_list(primary_key) or None,
        "visibility": visibility,
    }
    if tags is not None:  # a form without the field leaves them as they are
        fields["tags"] = web.split_list(tags)
    if readme is not None:
        fields["readme"] = readme.replace("\r\n", "\n")
    try:
        body = web.validated(DatasetPatch, fields)
        with transaction() as conn:
            service.require(conn, user, dataset_id, "admin")
            service.update_dataset(
                conn, dataset_id, body.model_dump(exclude_unset=True), actor=user
            )
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
            service.require(conn, user, dataset_id, "admin")
            service.grant(conn, dataset_id, username.strip(), role, actor=user)
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
            service.require(conn, user, dataset_id, "admin")
            service.revoke(conn, dataset_id, username, actor=user)
    except DsaError as err:
        if err.status not in (404, 409):
            raise
        return _settings(request, dataset_id, error=err)
    return web.redirect(f"/datasets/{dataset_id}/settings")


@router.post("/datasets/{dataset_id}/delete")
def delete(
    request: Request, dataset_id: uuid.UUID, confirm: str = Form(""), csrf: str = Form("")
) -> Response:
    """Soft-deletes the dataset (as ``DELETE /api/v1/datasets/{id}`` does) once
    its admin has typed its name, the confirmation that works without JavaScript."""
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    try:
        with transaction() as conn:
            ds = service.require(conn, user, dataset_id, "admin")
            if confirm.strip() != ds["name"]:
                raise ConfirmationRequired(
                    f"type the dataset's name, {ds['name']}, to confirm the deletion",
                )
            service.delete_dataset(conn, dataset_id, actor=user)
    except DsaError as err:
        if err.status != 422:
            raise
        return _settings(request, dataset_id, delete_error=err)
    return web.redirect(web.url("/datasets", deleted=ds["name"]))

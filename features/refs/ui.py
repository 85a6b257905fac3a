"""Branches and tags: list, create, delete, protect."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Form, Request, Response

from core.db import read, transaction
from core.errors import DsaError
from features.datasets import service as datasets_service
from features.quality import service as quality_service
from features.refs import service
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)


@router.get("/datasets/{dataset_id}/branches")
def refs_page(request: Request, dataset_id: uuid.UUID, done: str = "") -> Response:
    return _page(request, dataset_id, done=done)


def _page(
    request: Request, dataset_id: uuid.UUID, *, error: DsaError | None = None, done: str = ""
) -> Response:
    user = web.current_user(request)
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "read")
        refs = service.list_refs(conn, dataset_id)
    return web.render(
        request,
        "refs/refs.html",
        status=error.status if error else 200,
        dataset=ds,
        tab="refs",
        ref=None,
        branches=[r for r in refs if r["kind"] == "branch"],
        tags=[r for r in refs if r["kind"] == "tag"],
        error=error.to_problem() if error else None,
        done=done,
    )


def _act(request: Request, dataset_id: uuid.UUID, role: str, action, done: str) -> Response:  # type: ignore[no-untyped-def]
    user = web.require_user(request)
    try:
        with transaction() as conn:
            ds = datasets_service.require(conn, user, dataset_id, role)
            action(conn, user, ds)
    except DsaError as err:
        if err.status not in (404, 409, 422, 400):
            raise
        return _page(request, dataset_id, error=err)
    return web.redirect(web.url(f"/datasets/{dataset_id}/branches", done=done))


@router.post("/datasets/{dataset_id}/branches")
def create_branch(
    request: Request,
    dataset_id: uuid.UUID,
    name: str = Form(""),
    from_ref: str = Form("", alias="from"),
    csrf: str = Form(""),
) -> Response:
    web.check_csrf(request, csrf)
    return _act(
        request,
        dataset_id,
        "write",
        lambda conn, user, ds: _create_branch(
            conn, user, dataset_id, name.strip(), from_ref.strip() or ds["default_branch"]
        ),
        f"Branch {name.strip()} created.",
    )


def _create_branch(
    conn: Any, user: Any, dataset_id: uuid.UUID, name: str, from_ref: str
) -> dict[str, Any]:
    quality_service.require_gate_at(conn, user, dataset_id, name, from_ref)
    return service.create_branch(
        conn, dataset_id=dataset_id, name=name, from_ref=from_ref, by=user.username
    )


@router.post("/datasets/{dataset_id}/tags")
def create_tag(
    request: Request,
    dataset_id: uuid.UUID,
    name: str = Form(""),
    from_ref: str = Form("", alias="from"),
    message: str = Form(""),
    csrf: str = Form(""),
) -> Response:
    web.check_csrf(request, csrf)
    return _act(
        request,
        dataset_id,
        "write",
        lambda conn, user, ds: service.create_tag(
            conn,
            dataset_id=dataset_id,
            name=name.strip(),
            from_ref=from_ref.strip() or ds["default_branch"],
            by=user.username,
            message=message or None,
        ),
        f"Tag {name.strip()} created.",
    )


@router.post("/datasets/{dataset_id}/branches/{name:path}/delete")
def delete_branch(
    request: Request, dataset_id: uuid.UUID, name: str, csrf: str = Form("")
) -> Response:
    web.check_csrf(request, csrf)
    return _act(
        request,
        dataset_id,
        "write",
        lambda conn, user, ds: service.delete_branch(
            conn,
            dataset_id=dataset_id,
            name=name,
            default_branch=ds["default_branch"],
            by=user.username,
        ),
        f"Branch {name} deleted.",
    )


@router.post("/datasets/{dataset_id}/branches/{name:path}/protect")
def protect_branch(
    request: Request,
    dataset_id: uuid.UUID,
    name: str,
    protected: str = Form("true"),
    csrf: str = Form(""),
) -> Response:
    web.check_csrf(request, csrf)
    on = protected == "true"
    return _act(
        request,
        dataset_id,
        "admin",
        lambda conn, user, ds: service.set_protected(
            conn, dataset_id=dataset_id, name=name, protected=on, by=user.username
        ),
        f"Branch {name} {'protected' if on else 'unprotected'}.",
    )


@router.post("/datasets/{dataset_id}/tags/{name:path}/delete")
def delete_tag(
    request: Request, dataset_id: uuid.UUID, name: str, csrf: str = Form("")
) -> Response:
    web.check_csrf(request, csrf)
    return _act(
        request,
        dataset_id,
        "admin",  # a tag is a stable name: only admins remove (and so re-point) one
        lambda conn, user, ds: service.delete_tag(
            conn, dataset_id=dataset_id, name=name, by=user.username
        ),
        f"Tag {name} deleted.",
    )

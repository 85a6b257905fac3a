"""The webhooks page of a dataset (its admins'): the webhooks with their
last delivery, a form to add one (its secret shown once), a test event, and
each webhook's delivery log."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Form, Request, Response

from core.db import read, transaction
from core.errors import DsaError
from features.datasets import service as datasets_service
from features.web import service as web
from features.webhooks import service
from features.webhooks.models import EVENTS, WebhookCreate

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)


@router.get("/datasets/{dataset_id}/webhooks")
def webhooks_page(request: Request, dataset_id: uuid.UUID, sent: str = "") -> Response:
    return _page(request, dataset_id, sent=sent)


def _page(
    request: Request,
    dataset_id: uuid.UUID,
    *,
    error: DsaError | None = None,
    created: dict[str, object] | None = None,
    sent: str = "",
) -> Response:
    user = web.require_user(request)
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "admin")
        hooks = service.list_of(conn, dataset_id)
    return web.render(
        request,
        "webhooks/list.html",
        status=error.status if error else (201 if created else 200),
        dataset=ds,
        tab="settings",
        hooks=hooks,
        events=EVENTS,
        created=created,
        sent=sent,
        error=error.to_problem() if error else None,
    )


@router.post("/datasets/{dataset_id}/webhooks")
def add(
    request: Request,
    dataset_id: uuid.UUID,
    url: str = Form(""),
    events: list[str] = Form([]),
    secret: str = Form(""),
    csrf: str = Form(""),
) -> Response:
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    fields = {"url": url.strip(), "events": events, "secret": secret.strip() or None}
    try:
        body = web.validated(WebhookCreate, fields)
        with transaction() as conn:
            datasets_service.require(conn, user, dataset_id, "admin")
            row = service.create(
                conn,
                dataset_id=dataset_id,
                url=body.url,
                events=list(body.events),
                secret=body.secret,
                actor=user,
            )
    except DsaError as err:
        if err.status not in (409, 422):
            raise
        return _page(request, dataset_id, error=err)
    return _page(request, dataset_id, created=row)


@router.post("/datasets/{dataset_id}/webhooks/{webhook_id}/delete")
def remove(
    request: Request, dataset_id: uuid.UUID, webhook_id: uuid.UUID, csrf: str = Form("")
) -> Response:
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    with transaction() as conn:
        datasets_service.require(conn, user, dataset_id, "admin")
        service.delete(conn, dataset_id, webhook_id, actor=user)
    return web.redirect(f"/datasets/{dataset_id}/webhooks")


@router.post("/datasets/{dataset_id}/webhooks/{webhook_id}/test")
def test_event(
    request: Request, dataset_id: uuid.UUID, webhook_id: uuid.UUID, csrf: str = Form("")
) -> Response:
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    with transaction() as conn:
        datasets_service.require(conn, user, dataset_id, "admin")
        service.send_test(conn, dataset_id, webhook_id, by=user.id)
    return web.redirect(f"/datasets/{dataset_id}/webhooks/{webhook_id}?sent=1")


@router.get("/datasets/{dataset_id}/webhooks/{webhook_id}")
def deliveries_page(
    request: Request, dataset_id: uuid.UUID, webhook_id: uuid.UUID, page: int = 1, sent: str = ""
) -> Response:
    user = web.require_user(request)
    page = max(1, min(page, 10_000))
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "admin")
        hook = service.get(conn, dataset_id, webhook_id)
        log = service.deliveries(conn, dataset_id, webhook_id, page=page, per_page=50)
    return web.render(
        request,
        "webhooks/deliveries.html",
        dataset=ds,
        tab="settings",
        hook=hook,
        log=log,
        sent=sent,
    )

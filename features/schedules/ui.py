"""The schedules page of a dataset (its writers'): each scheduled URL import
with its next time and latest runs, a form to add one, and pause, resume,
run now and delete."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Form, Request, Response

from core.db import read, transaction
from core.errors import DsaError
from features.datasets import service as datasets_service
from features.refs import service as refs_service
from features.schedules import service
from features.schedules.models import ScheduleCreate
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)


@router.get("/datasets/{dataset_id}/schedules")
def schedules_page(request: Request, dataset_id: uuid.UUID, started: str = "") -> Response:
    return _page(request, dataset_id, started=started)


def _page(
    request: Request,
    dataset_id: uuid.UUID,
    *,
    error: DsaError | None = None,
    started: str = "",
    form: dict[str, str] | None = None,
) -> Response:
    user = web.require_user(request)
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "write")
        schedules = service.list_of(conn, dataset_id)
        branches = [
            r["name"] for r in refs_service.list_refs(conn, dataset_id) if r["kind"] == "branch"
        ]
    return web.render(
        request,
        "schedules/list.html",
        status=error.status if error else 200,
        dataset=ds,
        tab="settings",
        schedules=schedules,
        branches=branches,
        started=started,
        form=form or {},
        error=error.to_problem() if error else None,
    )


@router.post("/datasets/{dataset_id}/schedules")
def add(
    request: Request,
    dataset_id: uuid.UUID,
    url: str = Form(""),
    branch: str = Form("main"),
    cron: str = Form(""),
    mode: str = Form("replace"),
    table: str = Form(""),
    message: str = Form(""),
    csrf: str = Form(""),
) -> Response:
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    form = {"url": url, "branch": branch, "cron": cron, "mode": mode, "table": table,
            "message": message}  # fmt: skip
    try:
        body = web.validated(
            ScheduleCreate,
            {
                "url": url.strip(),
                "branch": branch,
                "cron": cron.strip(),
                "mode": mode,
                "table": table.strip() or None,
                "message": message.strip() or None,
            },
        )
        with transaction() as conn:
            ds = datasets_service.require_branch(conn, user, dataset_id, body.branch)
            service.create(
                conn,
                dataset_id=dataset_id,
                created_by=user.id,
                body={**body.model_dump(exclude={"url", "urls"}), "urls": body.all_urls()},
                primary_key=ds["primary_key"],
            )
    except DsaError as err:
        if err.status not in (404, 409, 422):
            raise
        return _page(request, dataset_id, error=err, form=form)
    return web.redirect(f"/datasets/{dataset_id}/schedules")


@router.post("/datasets/{dataset_id}/schedules/{schedule_id}/pause")
def pause(
    request: Request,
    dataset_id: uuid.UUID,
    schedule_id: uuid.UUID,
    paused: str = Form("true"),
    csrf: str = Form(""),
) -> Response:
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    with transaction() as conn:
        service.require_change(conn, user, dataset_id, schedule_id)
        service.update(conn, dataset_id, schedule_id, paused=paused == "true", cron=None)
    return web.redirect(f"/datasets/{dataset_id}/schedules")


@router.post("/datasets/{dataset_id}/schedules/{schedule_id}/run")
def run(
    request: Request, dataset_id: uuid.UUID, schedule_id: uuid.UUID, csrf: str = Form("")
) -> Response:
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    try:
        started = service.run_by(user, dataset_id, schedule_id)
    except DsaError as err:
        if err.status != 409:
            raise
        return _page(request, dataset_id, error=err)
    job = started["job_id"]
    return web.redirect(f"/datasets/{dataset_id}/jobs/{job}")


@router.post("/datasets/{dataset_id}/schedules/{schedule_id}/delete")
def remove(
    request: Request, dataset_id: uuid.UUID, schedule_id: uuid.UUID, csrf: str = Form("")
) -> Response:
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    with transaction() as conn:
        service.require_change(conn, user, dataset_id, schedule_id)
        service.delete(conn, dataset_id, schedule_id)
    return web.redirect(f"/datasets/{dataset_id}/schedules")

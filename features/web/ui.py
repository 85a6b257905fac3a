"""The shell's one page: ``/`` leads to the datasets."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)


@router.get("/")
def home(request: Request) -> Response:
    return web.redirect("/datasets")

"""The web UI's Download menu (data and commit pages): a format link goes
through here, which hands the signed-in browser a short-lived signed link
of the export (303) rather than serving the file itself, so downloads from
a page and from the API are one path (limits, audit, ranges). ``show=link``
shows the link with copyable CLI and Python snippets instead."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from core.db import read
from features.datasets import service as datasets_service
from features.exports import service
from features.exports.routes import make_link
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)
DOWNLOAD_LINK_S = 600  # a browser follows it at once
SHOWN_LINK_S = 3600  # to paste into a notebook or a job


@router.get("/datasets/{dataset_id}/download")
def download(
    request: Request,
    dataset_id: uuid.UUID,
    ref: str,
    table: str | None = None,
    format: str = "csv",
    col: list[str] | None = Query(None),
    filter: str | None = None,
    show: str | None = None,
) -> Response:
    user = web.current_user(request)
    filter = (filter or "").strip() or None
    options: dict[str, Any] = {
        "table": table, "format": format, "columns": col or None, "filter": filter,
        "compression": None, "raw": False,
    }  # fmt: skip
    link: Any
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "read")
        ex = service.prepare(conn, ds, ref, **options) if user is None else None
    if ex is not None:  # a visitor reads a public dataset: its export needs no link
        path = web.url(f"/api/v1/datasets/{dataset_id}/refs/{ex.commit_id}/export")
        path += "?" + urlencode(ex.options.params())
        link = {
            "url": str(request.base_url).rstrip("/") + path,
            "commit_id": ex.commit_id,
            "filename": ex.filename,
            "expires_at": None,
        }
    else:
        assert user is not None
        seconds = SHOWN_LINK_S if show == "link" else DOWNLOAD_LINK_S
        link = make_link(request, user, dataset_id, ref, seconds=seconds, pin=True, **options)
    if show != "link":
        url = link["url"] if isinstance(link, dict) else link.url
        return RedirectResponse(url, status_code=303)
    return web.render(
        request,
        "exports/link.html",
        dataset=ds,
        tab="data",
        link=link,
        ref=ref,
        table=table,
        format=format,
        cols=col or [],
        filter=filter,
    )

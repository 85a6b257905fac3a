from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from core import audit
from core.config import get_settings
from core.db import read
from features.auth import service as auth_service
from features.auth.service import User, current_user, optional_user
from features.datasets import service as datasets_service
from features.exports import links, service
from features.exports.errors import BadSignature, LinkLifetimeTooLong, RangeNotSatisfiable
from features.exports.models import ExportLink
from features.exports.service import Export
from features.exports.spec import FORMATS

router = APIRouter(prefix="/api/v1", tags=["exports"])
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
IMMUTABLE = "max-age=31536000, immutable"


class LinkCreate(BaseModel):
    table: str | None = None
    format: str = "csv"
    columns: list[str] | str | None = None
    filter: str | None = None
    compression: str | None = None
    raw: bool = False
    expires_in_seconds: int = Field(3600, ge=1)
    pin: bool = True


def _headers(export: Export) -> dict[str, str]:
    scope = "public" if export.dataset["visibility"] == "public" else "private"
    h = {
        "ETag": export.etag,
        "Last-Modified": export.last_modified,
        "Cache-Control": f"{scope}, {IMMUTABLE}" if export.pinned else f"{scope}, no-cache",
        "Content-Disposition": _disposition(export.filename),
        "X-DSA-Commit-Id": export.commit_id,
    }
    return h


def _disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


def _not_modified(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag in tags


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one range asked for, inclusive; None: serve the whole file (no or
    unusable header); RangeNotSatisfiable when it lies past the end."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None:  # several ranges or another unit: the whole file, as RFC 9110 allows
        return None
    a, b = m.groups()
    if a == "" and b == "":
        return None
    if a == "":
        n = int(b)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"the file has {size} bytes", size=size)
        return max(size - n, 0), size - 1
    start = int(a)
    end = min(int(b), size - 1) if b else size - 1
    if start >= size or (b and int(b) < start):
        raise RangeNotSatisfiable(f"the file has {size} bytes", size=size)
    return start, end


_FILE = {"schema": {"type": "string", "format": "binary"}}


@router.get(
    "/datasets/{dataset_id}/refs/{ref:path}/export",
    responses={
        200: {
            "description": "the file, streamed (Parquet: whole, or 206 for a Range)",
            "content": {media.split(";")[0]: _FILE for _, media in FORMATS.values()},
        }
    },
)
@router.head("/datasets/{dataset_id}/refs/{ref:path}/export", include_in_schema=False)
def export(
    request: Request,
    dataset_id: uuid.UUID,
    ref: str,
    table: str | None = None,
    format: str | None = None,
    columns: str | None = None,
    filter: str | None = None,
    compression: str | None = None,
    raw: bool = False,
    expires: str | None = None,
    uid: str | None = None,
    sig: str | None = None,
) -> Response:
    """Stream a table of a version as a file (see docs/api.md, "Exports")."""
    items = request.query_params.multi_items()
    with read() as conn:
        if sig is not None or expires is not None or uid is not None:
            user_id = links.verify(request.url.path, items)
            user = auth_service.user_by_id(conn, user_id)
            if user is None:
                raise BadSignature("the export link's user no longer exists")
        else:
            user = optional_user(request)
        dataset = datasets_service.require(conn, user, dataset_id, "read")
        ex = service.prepare(
            conn,
            dataset,
            ref,
            table=table,
            format=format,
            columns=columns,
            filter=filter,
            compression=compression,
            raw=raw,
        )
    headers = _headers(ex)
    if _not_modified(request, ex.etag):
        return Response(status_code=304, headers=headers)
    head = request.method == "HEAD"
    if not head and "range" not in request.headers:  # a download (ranged reads: not each one)
        _audit(user, dataset_id, ref, ex, link=sig is not None)
    if ex.options.format != "parquet":
        headers["Accept-Ranges"] = "none"
        if head:
            r = Response(media_type=ex.media_type, headers=headers)
            del r.headers["content-length"]
            return r
        return StreamingResponse(service.stream(ex), media_type=ex.media_type, headers=headers)

    return _parquet(request, ex, headers)


def _audit(user: User | None, dataset_id: uuid.UUID, ref: str, ex: Export, **details: Any) -> None:
    """An ``export`` entry in the audit log (a download, or a link handed out)."""
    audit.record_alone(
        "export",
        actor=user,
        dataset_id=dataset_id,
        target=ref,
        details={
            "commit_id": ex.commit_id,
            "format": ex.options.format,
            "table": ex.options.table,
            "filter": ex.options.filter,
            **details,
        },
    )


def _parquet(request: Request, ex: Export, headers: dict[str, str]) -> Response:
    """A Parquet export: stored once, then served whole or by range (by the
    API, or by the bucket after a redirect)."""
    head = request.method == "HEAD"
    headers["Accept-Ranges"] = "bytes"
    size = service.materialised_size(ex)
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if wanted and if_range and if_range.strip().removeprefix("W/") != ex.etag:
        wanted = None  # the client's copy is another file: send the whole of this one
    if size is None and (head or wanted):
        size = service.materialise(ex)  # readers over HTTP need the length and ranges
    if size is None:  # first full download: stream it while storing it
        return StreamingResponse(
            service.stream_and_store(ex), media_type=ex.media_type, headers=headers
        )
    if not head and (location := service.redirect_url(ex)):
        # the bucket serves the stored file (and its ranges) itself
        return Response(
            status_code=307,
            headers={"Location": location, "Cache-Control": "private, no-store", "ETag": ex.etag},
        )
    try:
        rng = _byte_range(wanted, size)
    except RangeNotSatisfiable as err:
        return JSONResponse(
            err.to_problem(instance=request.url.path),
            status_code=416,
            media_type="application/problem+json",
            headers={**headers, "Content-Range": f"bytes */{size}"},
        )
    if rng is None:
        start, end, status = 0, size - 1, 200
    else:
        (start, end), status = rng, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)
    if head:
        return Response(status_code=status, media_type=ex.media_type, headers=headers)
    body = service.read_range(ex, start, end) if end >= start else iter(())
    return StreamingResponse(body, status_code=status, media_type=ex.media_type, headers=headers)


@router.post(
    "/datasets/{dataset_id}/refs/{ref:path}/export-links",
    response_model=ExportLink,
    status_code=201,
)
def create_link(
    request: Request,
    dataset_id: uuid.UUID,
    ref: str,
    body: LinkCreate,
    user: User = Depends(current_user),
) -> ExportLink:
    """A signed URL of an export, usable without an Authorization header."""
    return make_link(
        request,
        user,
        dataset_id,
        ref,
        table=body.table,
        format=body.format,
        columns=body.columns,
        filter=body.filter,
        compression=body.compression,
        raw=body.raw,
        seconds=body.expires_in_seconds,
        pin=body.pin,
    )


def make_link(
    request: Request,
    user: User,
    dataset_id: uuid.UUID,
    ref: str,
    *,
    seconds: int,
    pin: bool,
    **options: Any,
) -> ExportLink:
    """A signed link of the export ``options`` describe (``prepare``'s
    arguments), valid ``seconds``; audited as a link handed out."""
    limit = get_settings().export_link_max_seconds
    if seconds > limit:
        raise LinkLifetimeTooLong(f"expires_in_seconds may be at most {limit}", limit=limit)
    with read() as conn:
        dataset = datasets_service.require(conn, user, dataset_id, "read")
        ex = service.prepare(conn, dataset, ref, **options)
    expires_at = int(time.time()) + seconds
    _audit(user, dataset_id, ref, ex, link=True, expires_at=expires_at)
    target = ex.commit_id if pin else ref
    path = f"/api/v1/datasets/{dataset_id}/refs/{target}/export"
    query = links.sign(path, ex.options.params(), user_id=user.id, expires_at=expires_at)
    base = str(request.base_url).rstrip("/")
    return ExportLink(
        url=f"{base}{quote(path)}?{query}",
        expires_at=datetime.fromtimestamp(expires_at, UTC),
        commit_id=ex.commit_id,
        etag=ex.etag,
        filename=ex.filename,
    )

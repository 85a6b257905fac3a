from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from core import ratelimit
from core.config import get_settings
from core.db import transaction
from core.storage import get_store
from features.auth.service import User, current_user
from features.datasets import service as datasets_service
from features.imports import service as imports_service
from features.imports.models import UrlFields
from features.jobs import service as jobs_service
from features.uploads import multipart
from features.uploads.errors import FileMissing, UploadTooLarge
from features.uploads.models import ImportAccepted, UploadAccepted

router = APIRouter(prefix="/api/v1", tags=["imports"])


def _check(user: User, dataset_id: uuid.UUID, branch: str) -> list[str] | None:
    """Write role, an existing branch, and the user's import rate
    (``DSA_RATE_LIMIT_IMPORTS``); returns the dataset's primary key."""
    with transaction() as conn:
        ds = datasets_service.require_branch(conn, user, dataset_id, branch)
        jobs_service.check_room(conn, user.id)  # before the file is received
    count_import(user)
    return ds["primary_key"]


def count_import(user: User) -> None:
    """429 past ``DSA_RATE_LIMIT_IMPORTS`` uploads and URL imports of one user."""
    rule = get_settings().rate_limit_imports
    if rule:
        ratelimit.hit(rule, "imports", str(user.id), what="uploads and imports")


_UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "the file"},
                    "message": {"type": "string"},
                    "mode": {"type": "string", "enum": ["replace", "append", "upsert"]},
                    "table": {"type": "string"},
                    "expected_commit_id": {"type": "string"},
                    "options": {
                        "type": "string",
                        "description": "JSON: delimiter, header, encoding, null_values, "
                        "skip_rows, sheet, column_types (docs/api.md, Import options)",
                    },
                },
            }
        }
    },
}


@router.post(
    "/datasets/{dataset_id}/refs/{branch:path}/uploads",
    response_model=UploadAccepted,
    status_code=202,
    # the body is streamed by hand (never buffered), so FastAPI cannot see it:
    # described here, so /docs can upload a file and generators make a client
    openapi_extra={"requestBody": _UPLOAD_BODY},
)
async def upload(
    dataset_id: uuid.UUID, branch: str, request: Request, user: User = Depends(current_user)
) -> JSONResponse:
    """Stream a file into the object store and queue its import (nothing is parsed here)."""
    settings = get_settings()
    primary_key = await run_in_threadpool(_check, user, dataset_id, branch)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes + 1024**2:
        raise UploadTooLarge(
            f"the upload is larger than the limit of {settings.max_upload_bytes} bytes",
            limit=settings.max_upload_bytes,
        )
    upload_id = uuid.uuid4()
    form = await multipart.receive(
        request.stream(),
        request.headers.get("content-type", ""),
        store=get_store(),
        key=imports_service.upload_key(upload_id),
        max_file_bytes=settings.max_upload_bytes,
    )
    if form.file is None:
        raise FileMissing("the form has no 'file' part")
    received = form.file
    accepted = False
    try:
        req = imports_service.request_from_form(form.fields, received.filename, primary_key)

        def _accept() -> dict[str, Any]:
            with transaction() as conn:
                return imports_service.submit_upload(
                    conn,
                    user,
                    dataset_id=dataset_id,
                    branch=branch,
                    received=received,
                    request=req,
                    upload_id=upload_id,
                )

        body = await run_in_threadpool(_accept)
        accepted = True
    finally:
        if not accepted:  # refused: the file received goes
            await run_in_threadpool(imports_service.discard_upload, received.key or "")
    return JSONResponse(
        {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in body.items()},
        status_code=202,
        headers={"Location": body["links"]["job"]},
    )


class UrlImport(UrlFields):
    expected_commit_id: str | None = None


@router.post(
    "/datasets/{dataset_id}/refs/{branch:path}/imports",
    response_model=ImportAccepted,
    status_code=202,
)
def import_url(
    dataset_id: uuid.UUID, branch: str, body: UrlImport, user: User = Depends(current_user)
) -> JSONResponse:
    """Queue an import of a file the worker downloads (mirrors tried in order)."""
    primary_key = _check(user, dataset_id, branch)
    req = imports_service.request_from_url(
        body.all_urls(),
        checksum=body.checksum,
        mode=body.mode,
        message=body.message,
        table=body.table,
        options=body.options,
        expected_commit_id=body.expected_commit_id,
        primary_key=primary_key,
    )
    with transaction() as conn:
        out = imports_service.submit_url(
            conn, user, dataset_id=dataset_id, branch=branch, request=req
        )
    return JSONResponse(
        {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in out.items()},
        status_code=202,
        headers={"Location": out["links"]["job"]},
    )

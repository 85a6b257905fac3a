from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from core.config import get_settings
from core.db import transaction
from core.errors import BadRequest, TooLarge
from features.auth.service import User, current_user
from features.datasets import service as datasets_service
from features.refs import service as refs_service
from features.uploads import multipart, service

router = APIRouter(prefix="/api/v1", tags=["imports"])


def _check(user: User, dataset_id: uuid.UUID, branch: str) -> None:
    with transaction() as conn:
        datasets_service.require(conn, user, dataset_id, "write")
        refs_service.get_branch(conn, dataset_id, branch)


@router.post("/datasets/{dataset_id}/refs/{branch:path}/uploads", status_code=202)
async def upload(
    dataset_id: uuid.UUID, branch: str, request: Request, user: User = Depends(current_user)
) -> JSONResponse:
    """Stream a file into temporary storage and queue its import (nothing is parsed here)."""
    settings = get_settings()
    await run_in_threadpool(_check, user, dataset_id, branch)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes + 1024**2:
        raise TooLarge(
            f"the upload is larger than the limit of {settings.max_upload_bytes} bytes",
            code="upload_too_large",
            limit=settings.max_upload_bytes,
        )
    form = await multipart.receive(
        request.stream(),
        request.headers.get("content-type", ""),
        tmp_dir=settings.tmp_dir,
        max_file_bytes=settings.max_upload_bytes,
    )
    if form.file is None:
        raise BadRequest("the form has no 'file' part", code="file_missing")
    received = form.file
    try:
        params = service.parse_fields(form.fields, received.filename)

        def _accept() -> dict[str, Any]:
            with transaction() as conn:
                return service.accept(
                    conn,
                    user,
                    dataset_id=dataset_id,
                    branch=branch,
                    received=received,
                    params=params,
                )

        body = await run_in_threadpool(_accept)
    finally:
        Path(received.path).unlink(missing_ok=True)
    return JSONResponse(
        {k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in body.items()},
        status_code=202,
        headers={"Location": body["links"]["job"]},
    )

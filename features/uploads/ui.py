"""The upload page: a file (drag and drop or picker), mode, message and
options; then the job's page with a live progress bar fed by the job's
server-sent events, and its outcome: links to the new commit and its compare
view, or the problem with its location."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from core.config import get_settings
from core.db import read, transaction
from core.errors import DsaError
from core.storage import get_store
from features.commits import service as commits_service
from features.datasets import service as datasets_service
from features.imports import service as imports_service
from features.jobs import service as jobs_service
from features.jobs.errors import JobNotFound
from features.refs import service as refs_service
from features.uploads import multipart
from features.uploads.errors import BadFormOptions, FileMissing
from features.uploads.routes import count_import
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)
ENDED = ("succeeded", "failed", "cancelled")
_OPTION_FIELDS = ("delimiter", "encoding", "skip_rows", "null_values", "header", "sheet")


@router.get("/datasets/{dataset_id}/upload")
def upload_page(
    request: Request,
    dataset_id: uuid.UUID,
    branch: str | None = None,
    options: str = Query(
        "", max_length=20_000, description="the advanced options' JSON, prefilled"
    ),
) -> Response:
    user = web.require_user(request)
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "write")
        branches = [r for r in refs_service.list_refs(conn, dataset_id) if r["kind"] == "branch"]
    names = [b["name"] for b in branches]
    return web.render(
        request,
        "uploads/upload.html",
        dataset=ds,
        tab="upload",
        ref=branch if branch in names else ds["default_branch"],
        branches=branches,
        max_bytes=get_settings().max_upload_bytes,
        options=options,
    )


def options_from_form(fields: dict[str, str]) -> dict[str, Any]:
    """The import ``options`` object from the form's option fields (and the
    advanced JSON box, whose keys win)."""
    options: dict[str, Any] = {}
    if fields.get("delimiter"):
        d = fields["delimiter"]
        options["delimiter"] = "\t" if d in ("\\t", "tab") else d
    if fields.get("encoding"):
        options["encoding"] = fields["encoding"]
    if fields.get("skip_rows"):
        try:
            options["skip_rows"] = int(fields["skip_rows"])
        except ValueError:
            options["skip_rows"] = fields["skip_rows"]  # refused with the field's name
    if fields.get("null_values"):
        options["null_values"] = [
            v if v != '""' else "" for v in web.split_list(fields["null_values"])
        ]
    if fields.get("header") in ("yes", "no"):
        options["header"] = fields["header"] == "yes"
    if fields.get("sheet"):
        options["sheet"] = fields["sheet"]
    if fields.get("options", "").strip():
        try:
            extra = json.loads(fields["options"])
        except ValueError:
            extra = None
        if not isinstance(extra, dict):
            raise BadFormOptions(
                "advanced options must be a JSON object",
                errors=[{"field": "options", "message": "must be a JSON object"}],
            )
        options.update(extra)
    return options


@router.post("/datasets/{dataset_id}/upload")
async def upload(request: Request, dataset_id: uuid.UUID) -> Response:
    wants_json = "application/json" in request.headers.get("accept", "")
    try:
        return await _upload(request, dataset_id, wants_json)
    except DsaError as err:
        if not wants_json:
            raise
        return JSONResponse(
            err.to_problem(), status_code=err.status, media_type="application/problem+json"
        )


async def _upload(request: Request, dataset_id: uuid.UUID, wants_json: bool) -> Response:
    user = web.require_user(request)
    header_token = request.headers.get(web.CSRF_HEADER)
    if header_token:
        web.check_csrf(request, header_token)
    settings = get_settings()

    def _check() -> list[str] | None:
        with read() as conn:
            ds = datasets_service.require(conn, user, dataset_id, "write")
            jobs_service.check_room(conn, user.id)  # before the file is received
        count_import(user)
        return ds["primary_key"]  # type: ignore[no-any-return]

    primary_key = await run_in_threadpool(_check)
    upload_id = uuid.uuid4()
    form = await multipart.receive(
        request.stream(),
        request.headers.get("content-type", ""),
        store=get_store(),
        key=imports_service.upload_key(upload_id),
        max_file_bytes=settings.max_upload_bytes,
    )
    received = form.file
    accepted = False
    try:
        if not header_token:
            web.check_csrf(request, form.fields.get("csrf"))
        if received is None or not received.filename:
            raise FileMissing("choose a file to upload")
        branch = form.fields.get("branch") or "main"
        fields = {k: v for k, v in form.fields.items() if k in ("mode", "message", "table") and v}
        options = options_from_form(form.fields)
        if options:
            fields["options"] = json.dumps(options)
        req = imports_service.request_from_form(fields, received.filename, primary_key)

        def _accept() -> dict[str, Any]:
            with transaction() as conn:
                datasets_service.require_branch(conn, user, dataset_id, branch)
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
        if received is not None and not accepted:  # refused: the file received goes
            await run_in_threadpool(imports_service.discard_upload, received.key or "")
    page = f"/datasets/{dataset_id}/jobs/{body['job_id']}"
    if wants_json:
        return JSONResponse(
            {
                "job_id": str(body["job_id"]),
                "upload_id": str(body["upload_id"]),
                "links": {"job": body["links"]["job"], "page": page, "outcome": f"{page}/outcome"},
            },
            status_code=202,
        )
    return web.redirect(page)


def _job(request: Request, dataset_id: uuid.UUID, job_id: uuid.UUID) -> dict[str, Any]:
    user = web.require_user(request)
    with read() as conn:
        ds = datasets_service.require(conn, user, dataset_id, "read")
        row = jobs_service.get(conn, job_id)
        if row["dataset_id"] != dataset_id:
            raise JobNotFound(f"job {job_id} does not exist")
        job = jobs_service.to_out(row)
        parent = None
        if job["state"] == "succeeded" and job["commit_id"]:
            parents = commits_service.get(conn, dataset_id, job["commit_id"])["parents"]
            parent = parents[0] if parents else None
    problem = job.get("error") or None
    where = {}
    if problem:
        where = {
            k: problem[k] for k in ("file", "sheet", "line", "column", "field") if k in problem
        }
    filename = ((row.get("params") or {}).get("upload") or {}).get("filename")
    renames = {
        h["from"]: h["to"] for h in job.get("schema_suggestions") or [] if h["kind"] == "rename"
    }
    return {
        "dataset": ds,
        "job": job,
        "parent": parent,
        "problem": problem,
        "where": where,
        "filename": filename,
        "ended": job["state"] in ENDED,
        "table": (row.get("params") or {}).get("table"),
        "column_map": json.dumps({"column_map": renames}) if renames else None,
    }


@router.get("/datasets/{dataset_id}/jobs/{job_id}")
def job_page(request: Request, dataset_id: uuid.UUID, job_id: uuid.UUID) -> Response:
    ctx = _job(request, dataset_id, job_id)
    return web.render(request, "uploads/job.html", tab="upload", ref=ctx["job"]["ref"], **ctx)


@router.get("/datasets/{dataset_id}/jobs/{job_id}/outcome")
def job_outcome(request: Request, dataset_id: uuid.UUID, job_id: uuid.UUID) -> Response:
    ctx = _job(request, dataset_id, job_id)
    return web.render(request, "uploads/outcome.html", **ctx)

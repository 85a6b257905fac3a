"""Uploads: a received file becomes an upload object plus an import job."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import psycopg

from core import db
from core.errors import Invalid, UnsupportedMedia
from core.storage import get_store
from features.auth.service import User
from features.imports import service as imports_service
from features.jobs import service as jobs_service
from features.refs import service as refs_service
from features.uploads.multipart import ReceivedFile

Q = db.Queries(__file__)
MODES = ("replace", "append", "upsert")
_TABLE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,127}$")


def parse_fields(
    fields: dict[str, str], filename: str, primary_key: list[str] | None = None
) -> dict[str, Any]:
    """Validate the form fields; 422 listing every bad one, 415 for unknown formats."""
    errors = []
    mode = fields.get("mode") or "replace"
    if mode not in MODES:
        errors.append({"field": "mode", "message": f"must be one of {', '.join(MODES)}"})
    elif mode not in imports_service.SUPPORTED_MODES:
        errors.append({"field": "mode", "message": f"mode {mode!r} is not available yet"})
    elif mode == "upsert" and not primary_key:
        errors.append(
            {
                "field": "mode",
                "message": "upsert needs the dataset's primary_key; set it with PATCH first",
            }
        )
    options: dict[str, Any] = {}
    if fields.get("options"):
        try:
            options = json.loads(fields["options"])
            if not isinstance(options, dict):
                raise ValueError
        except ValueError:
            errors.append({"field": "options", "message": "must be a JSON object"})
            options = {}
    options_errors = imports_service.validate_options(options)
    errors.extend({"field": f"options.{k}", "message": m} for k, m in options_errors)
    table_given = bool(fields.get("table"))
    table = fields.get("table") or imports_service.table_name_from_file(filename)
    if not _TABLE.match(table):
        errors.append({"field": "table", "message": "1-128 letters, digits, _ . - or spaces"})
    expected = fields.get("expected_commit_id") or None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        errors.append({"field": "expected_commit_id", "message": "must be a full commit id"})
    if errors:
        names = ", ".join(e["field"] for e in errors)
        raise Invalid(f"the upload is invalid: {names}", code="invalid_request", errors=errors)
    fmt = imports_service.detect_format(filename, options)
    if fmt is None:
        raise UnsupportedMedia(
            f"cannot import {filename!r}: supported formats are "
            + ", ".join(imports_service.SUPPORTED_EXTENSIONS),
            code="unsupported_format",
        )
    return {
        "mode": mode,
        "table": table,
        "message": fields.get("message") or f"Import {filename}",
        "expected_commit_id": expected,
        "options": options,
        "format": fmt,
        "table_given": table_given,
        "primary_key": primary_key,
    }


def accept(
    conn: psycopg.Connection[Any],
    user: User,
    *,
    dataset_id: uuid.UUID,
    branch: str,
    received: ReceivedFile,
    params: dict[str, Any],
) -> dict[str, Any]:
    """Store the upload, record it and its job; the import is enqueued after commit."""
    check_expected(conn, dataset_id, branch, params.get("expected_commit_id"), params["mode"])
    upload_id = uuid.uuid4()
    key = f"uploads/{upload_id.hex}"
    get_store().put_file(key, Path(received.path), move=True)
    conn.execute(
        Q.insert_upload,
        {
            "id": upload_id,
            "dataset_id": dataset_id,
            "object_key": key,
            "filename": received.filename,
            "size": received.size,
            "blake3": received.blake3,
            "created_by": user.id,
        },
    )
    job = jobs_service.create(
        conn,
        kind="import",
        dataset_id=dataset_id,
        ref_name=branch,
        upload_id=upload_id,
        params={
            **params,
            "author": user.username,
            "upload": {
                "object_key": key,
                "filename": received.filename,
                "size": received.size,
                "blake3": received.blake3,
            },
        },
        total_bytes=received.size,
        created_by=user.id,
    )
    imports_service.enqueue_after_commit(conn, job["id"])
    return {
        "job_id": job["id"],
        "upload_id": upload_id,
        "links": {"job": f"/api/v1/jobs/{job['id']}"},
    }


def check_expected(
    conn: psycopg.Connection[Any],
    dataset_id: uuid.UUID,
    branch: str,
    expected: str | None,
    mode: str,
) -> None:
    """409 ``ref_conflict`` now, rather than from the job later, when the
    request names an ``expected_commit_id`` the branch has already left."""
    if expected is None:
        return
    actual = refs_service.get_branch(conn, dataset_id, branch)["commit_id"]
    if actual != expected:
        raise imports_service.branch_moved(branch, expected, actual, mode=mode, stale=True)


def filename_for_url(url: str) -> str:
    """The file name a URL import goes by; without an extension it is read as CSV."""
    name = imports_service.filename_of(url)
    return name if "." in name else name + ".csv"


def accept_url(
    conn: psycopg.Connection[Any],
    user: User,
    *,
    dataset_id: uuid.UUID,
    branch: str,
    urls: list[str],
    checksum: str | None,
    params: dict[str, Any],
) -> dict[str, Any]:
    """Record an import from URLs; the worker downloads (nothing is fetched here)."""
    check_expected(conn, dataset_id, branch, params.get("expected_commit_id"), params["mode"])
    job = jobs_service.create(
        conn,
        kind="import",
        dataset_id=dataset_id,
        ref_name=branch,
        upload_id=None,
        params={**params, "author": user.username, "source": {"urls": urls, "checksum": checksum}},
        total_bytes=None,
        created_by=user.id,
    )
    imports_service.enqueue_after_commit(conn, job["id"])
    return {"job_id": job["id"], "links": {"job": f"/api/v1/jobs/{job['id']}"}}

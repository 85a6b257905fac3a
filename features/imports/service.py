"""Imports: turn an uploaded or downloaded file into a commit on a branch.

What other features call. A request to import is validated once into an
``ImportRequest`` (``features.imports.models``: ``request_from_form`` for
a multipart upload's fields, ``request_from_url`` for a URL import) and
submitted (``submit_upload``, ``submit_url``): the upload and its job are
recorded in the caller's transaction and the job is queued after it
commits. A worker then runs it (``run``, the pipeline in
``features.imports.pipeline``: acquire → read → build → land).
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import structlog

from core import db, queue
from core.storage import COMPRESSED, get_store, put_local
from features.auth.service import User
from features.imports import pipeline
from features.imports.errors import QueueDown
from features.imports.fetch import redact
from features.imports.models import (
    ImportRequest,
    ReceivedFile,
    UploadRef,
    from_form,
    from_url,
)
from features.jobs import service as jobs_service
from features.refs import service as refs_service

__all__ = [
    "ImportRequest",
    "redact",
    "discard_upload",
    "upload_key",
    "request_from_form",
    "request_from_url",
    "run",
    "submit_upload",
    "submit_url",
]

log = structlog.get_logger(__name__)
Q = db.Queries(__file__)

request_from_form = from_form
request_from_url = from_url
run = pipeline.run


def submit_upload(
    conn: psycopg.Connection[Any],
    user: User,
    *,
    dataset_id: uuid.UUID,
    branch: str,
    received: ReceivedFile,
    request: ImportRequest,
    upload_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Record the upload and its job; the import is enqueued after commit.
    The file is in the object store already (``upload_key(upload_id)``, where
    the route streamed it) or is moved there from ``received.path``."""
    check_expected(conn, dataset_id, branch, request)
    upload_id = upload_id or uuid.uuid4()
    key = upload_key(upload_id)
    if received.key is None:
        assert received.path is not None
        put_local(get_store(), key, received.path)
    elif received.key != key:
        raise ValueError(f"the upload is at {received.key}, not at {key}")
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
    upload = UploadRef(
        object_key=key, filename=received.filename, size=received.size, blake3=received.blake3
    )
    job = jobs_service.create(
        conn,
        kind="import",
        dataset_id=dataset_id,
        ref_name=branch,
        upload_id=upload_id,
        params=request.model_copy(update={"author": user.username, "upload": upload}).params(),
        total_bytes=received.size,
        created_by=user.id,
    )
    _enqueue_after_commit(conn, job["id"])
    return {
        "job_id": job["id"],
        "upload_id": upload_id,
        "links": {"job": f"/api/v1/jobs/{job['id']}"},
    }


def upload_key(upload_id: uuid.UUID) -> str:
    """Where an upload's file is kept in the object store until its import
    ends: compressed on a remote store (``core.storage.COMPRESSED``), where a
    CSV crosses the network twice (API to bucket, bucket to worker) at ~1/3
    of its size; as it is in a directory."""
    return f"uploads/{upload_id.hex}" + (COMPRESSED if get_store().remote else "")


def line_index_key(dataset_id: Any, branch: str, table: str) -> str:
    """The object holding a branch's line index of ``table`` (garbage
    collection keeps those of branches and tables that exist)."""
    from features.imports import lines

    return lines.index_key(dataset_id, branch, table)


def clean_uploads(older_than_s: float) -> int:
    """Delete stored uploads no import will read (their job ended without
    deleting them, or none was ever made: a request refused or an API
    killed) once older than ``older_than_s``, and abort uploads that never
    finished streaming in; how many went. An upload a queued or running
    job still needs is kept, however old."""
    import time

    store = get_store()
    cutoff = time.time() - older_than_s
    old = [o.key for o in store.list("uploads") if o.modified < cutoff]
    removed = store.clean_partial("uploads", older_than_s)
    if not old:
        return removed
    with db.read() as conn:
        needed = {r["object_key"] for r in conn.execute(Q.uploads_in_use, {"keys": old})}
    for key in old:
        if key not in needed:
            store.delete(key)
            removed += 1
    return removed


def discard_upload(key: str) -> None:
    """Delete an upload the route received but did not submit (refused)."""
    if key:
        get_store().delete(key)


def submit_url(
    conn: psycopg.Connection[Any],
    user: User,
    *,
    dataset_id: uuid.UUID,
    branch: str,
    request: ImportRequest,
) -> dict[str, Any]:
    """Record an import from URLs; the worker downloads (nothing is fetched here)."""
    check_expected(conn, dataset_id, branch, request)
    job = jobs_service.create(
        conn,
        kind="import",
        dataset_id=dataset_id,
        ref_name=branch,
        upload_id=None,
        params=request.model_copy(update={"author": user.username}).params(),
        total_bytes=None,
        created_by=user.id,
    )
    _enqueue_after_commit(conn, job["id"])
    return {"job_id": job["id"], "links": {"job": f"/api/v1/jobs/{job['id']}"}}


def check_expected(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, branch: str, request: ImportRequest
) -> None:
    """409 ``ref_conflict`` now, rather than from the job later, when the
    request names an ``expected_commit_id`` the branch has already left."""
    expected = request.expected_commit_id
    if expected is None:
        return
    actual = refs_service.get_branch(conn, dataset_id, branch)["commit_id"]
    if actual != expected:
        raise pipeline.branch_moved(branch, expected, actual, mode=request.mode, stale=True)


def _enqueue_after_commit(conn: psycopg.Connection[Any], job_id: uuid.UUID) -> None:
    """Send the task once the job row is committed; if the broker is down, fail the job."""

    def send() -> None:
        try:
            queue.enqueue("imports.run", str(job_id))
        except Exception as exc:
            log.error("enqueue failed", job_id=str(job_id), error=str(exc))
            err = QueueDown("the job queue is unreachable; try again shortly")
            with db.transaction() as conn2:
                jobs_service.fail(conn2, job_id, err.to_problem(f"/api/v1/jobs/{job_id}"))
            raise err from None

    db.after_commit(conn, send)

"""Imports: turn an uploaded file into a commit on a branch.

``run(job_id)`` is the whole import, called by the Celery task:

1. claim the job (a redelivered task claims it again; an ended job is left alone);
2. pass 1 (``csv_reader``): parse the file in bounded memory, spill text batches,
   infer each column's type from all of its values;
3. pass 2: cast the spilled batches, hash rows (one C call per batch), cut them
   into chunks of ``chunk_rows`` rows and store each chunk, then the schema,
   the manifest and the commit objects;
4. in one transaction: mirror the commit, move the branch by compare-and-swap
   from the head the import started from, mark the job succeeded.

Objects are content addressed and written before the ref moves, so a retry
rewrites nothing and produces the same commit id (its time is the job's
creation time), and a crash at any point leaves no partial commit visible.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import structlog

from core import db, queue
from core.chunks import write_chunk
from core.config import get_settings
from core.errors import DsaError, Unavailable
from core.objects import Commit, Manifest, Piece, Schema, TableEntry, get_commit, put_object
from core.schema import Column, arrow_type
from core.storage import get_store
from features.commits import service as commits_service
from features.imports.csv_reader import ImportFailed, fits, read_csv, strip_plus
from features.imports.formats import (
    SUPPORTED_EXTENSIONS,
    detect_format,
    table_name_from_file,
    validate_options,
)
from features.jobs import service as jobs_service
from features.refs import service as refs_service

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "SUPPORTED_MODES",
    "detect_format",
    "enqueue_after_commit",
    "run",
    "table_name_from_file",
    "validate_options",
]

log = structlog.get_logger(__name__)
SUPPORTED_MODES = ("replace",)
IMPORTER = "dsa.csv/1"
PROGRESS_EVERY_S = 0.5


def enqueue_after_commit(conn: Any, job_id: uuid.UUID) -> None:
    """Send the task once the job row is committed; if the broker is down, fail the job."""

    def send() -> None:
        try:
            queue.enqueue("imports.run", str(job_id))
        except Exception as exc:
            log.error("enqueue failed", job_id=str(job_id), error=str(exc))
            err = Unavailable("the job queue is unreachable; try again shortly", code="queue_down")
            with db.transaction() as conn2:
                jobs_service.fail(conn2, job_id, err.to_problem(f"/api/v1/jobs/{job_id}"))
            raise err from None

    db.after_commit(conn, send)


class _Progress:
    def __init__(self, job_id: uuid.UUID) -> None:
        self.job_id = job_id
        self.rows = 0
        self.bytes = 0
        self._last = 0.0

    def update(self, *, rows: int | None = None, bytes_read: int | None = None) -> None:
        if rows is not None:
            self.rows = rows
        if bytes_read is not None:
            self.bytes = bytes_read
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            jobs_service.report_progress(self.job_id, rows=self.rows, bytes_read=self.bytes)


def run(job_id: uuid.UUID) -> None:
    with db.transaction() as conn:
        job = jobs_service.claim(conn, job_id)
    if job is None:
        log.info("job already ended", job_id=str(job_id))
        return
    work = get_settings().tmp_dir / f"job-{job_id}"
    started = time.monotonic()
    try:
        work.mkdir(parents=True, exist_ok=True)
        _import(job, work)
    except DsaError as err:
        log.info("import failed", job_id=str(job_id), code=err.code, detail=err.detail)
        with db.transaction() as conn:
            jobs_service.fail(conn, job_id, err.to_problem(instance=f"/api/v1/jobs/{job_id}"))
        _drop_upload(job)
    except Exception:
        log.exception("import crashed", job_id=str(job_id))
        err = DsaError("the import failed because of an internal error; it has been logged")
        with db.transaction() as conn:
            jobs_service.fail(conn, job_id, err.to_problem(instance=f"/api/v1/jobs/{job_id}"))
        _drop_upload(job)
    else:
        _drop_upload(job)
        log.info("import done", job_id=str(job_id), seconds=round(time.monotonic() - started, 3))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _drop_upload(job: dict[str, Any]) -> None:
    if job.get("upload_id"):
        get_store().delete(f"uploads/{job['upload_id'].hex}")


def _import(job: dict[str, Any], work: Path) -> None:
    settings = get_settings()
    store = get_store()
    params = job["params"]
    dataset_id: uuid.UUID = job["dataset_id"]
    branch: str = job["ref_name"]
    upload = params["upload"]
    with db.transaction() as conn:
        head = (
            params.get("expected_commit_id")
            or refs_service.get_branch(conn, dataset_id, branch)["commit_id"]
        )
    parent = get_commit(store, head)
    progress = _Progress(job["id"])
    filename = upload["filename"]

    if not store.exists(upload["object_key"]):
        raise ImportFailed("the uploaded file is gone", code="upload_missing")
    with store.local_path(upload["object_key"]) as src:
        try:
            p1 = read_csv(
                src,
                work / "spill.arrow",
                options=params.get("options") or {},
                fmt=params["format"],
                on_bytes=lambda n: progress.update(bytes_read=n),
            )
        except ImportFailed as err:
            err.extra.setdefault("file", filename)
            raise
    progress.update(bytes_read=upload["size"])

    types = p1.types
    columns = [Column(n, t) for n, t in zip(p1.names, types, strict=True)]
    pieces: list[Piece] = []
    null_seen = [False] * len(columns)
    pending: list[pa.RecordBatch] = []
    pending_rows = 0
    done_rows = 0

    def flush() -> None:
        nonlocal pending, pending_rows, done_rows
        if not pending_rows:
            return
        table = pa.Table.from_batches(pending)
        cid, n = write_chunk(store, table, columns, tmp_dir=work)
        pieces.append(Piece(cid, 0, n))
        done_rows += n
        pending, pending_rows = [], 0
        progress.update(rows=done_rows)

    with pa.memory_map(str(p1.spill)) as source:
        reader = pa.ipc.open_file(source)
        row_base = 0
        for i in range(reader.num_record_batches):
            text = reader.get_batch(i)
            batch = _cast(text, columns, row_base, p1.dialect, filename)
            row_base += text.num_rows
            for j, col in enumerate(batch.columns):
                null_seen[j] = null_seen[j] or col.null_count > 0
            while batch.num_rows:
                take = min(batch.num_rows, settings.chunk_rows - pending_rows)
                pending.append(batch.slice(0, take))
                pending_rows += take
                batch = batch.slice(take)
                if pending_rows >= settings.chunk_rows:
                    flush()
        flush()

    columns = [Column(c.name, c.type, null_seen[i]) for i, c in enumerate(columns)]
    schema = Schema(tuple(columns))
    manifest = Manifest(tuple(pieces))
    put_object(store, "schema", schema)
    put_object(store, "manifest", manifest)
    table_name = params["table"]
    entry = TableEntry(schema=schema.id, manifest=manifest.id, row_count=done_rows)
    tables = {**parent.tables, table_name: entry}
    result: dict[str, Any] = {"rows": done_rows, "table": table_name}

    if tables == parent.tables:
        with db.transaction() as conn:
            jobs_service.succeed(
                conn,
                job["id"],
                commit_id=head,
                rows=done_rows,
                bytes_read=upload["size"],
                result={**result, "unchanged": True},
            )
        return

    commit = Commit(
        parents=(head,),
        tables=tables,
        author=params.get("author", "unknown"),
        created_at=commits_service.iso(job["created_at"]),
        message=params.get("message") or f"Import {filename}",
        provenance={
            "source": {
                "file_name": filename,
                "size": upload["size"],
                "blake3": upload["blake3"],
            },
            "table": table_name,
            "mode": params["mode"],
            "format": params["format"],
            "dialect": p1.dialect,
            "options": params.get("options") or {},
            "importer": IMPORTER,
            "dsa_version": _version(),
            "job_id": str(job["id"]),
        },
    )
    with db.transaction() as conn:
        commit_id = commits_service.record(conn, dataset_id=dataset_id, commit=commit)
        refs_service.cas_move(
            conn, dataset_id=dataset_id, name=branch, new=commit_id, expected=head
        )
        jobs_service.succeed(
            conn,
            job["id"],
            commit_id=commit_id,
            rows=done_rows,
            bytes_read=upload["size"],
            result=result,
        )


def _cast(
    text: pa.RecordBatch,
    columns: list[Column],
    row_base: int,
    dialect: dict[str, Any],
    filename: str,
) -> pa.RecordBatch:
    arrays = []
    for i, col in enumerate(columns):
        arr = text.column(i)
        if col.type == "string":
            arrays.append(arr)
            continue
        if col.type == "boolean":
            lower = pc.utf8_lower(arr)
            if not pc.all(pc.is_in(lower.drop_null(), pa.array(["true", "false"]))).as_py():
                raise _bad_value(arr, col, row_base, dialect, filename)
            arrays.append(pc.equal(lower, "true"))
            continue
        try:
            if col.type in ("integer", "float"):
                arrays.append(pc.cast(strip_plus(arr), arrow_type(col.type)))
            else:
                arrays.append(pc.cast(arr, arrow_type(col.type)))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise _bad_value(arr, col, row_base, dialect, filename) from None
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in columns])


def _bad_value(
    arr: pa.Array, col: Column, row_base: int, dialect: dict[str, Any], filename: str
) -> ImportFailed:
    """Find the first value that is not a ``col.type`` (only runs on the failure path)."""
    for k in range(len(arr)):
        v = arr[k]
        if v.is_valid and not fits(pa.array([v.as_py()], pa.large_string()), col.type):
            row = row_base + k + 1
            line = row + dialect["skip_rows"] + (1 if dialect["header"] else 0)
            return ImportFailed(
                f"column {col.name!r} is declared {col.type}, but row {row} holds {v.as_py()!r}",
                code="bad_value",
                file=filename,
                line=line,
                row=row,
                column=col.name,
            )
    return ImportFailed(f"column {col.name!r} cannot be read as {col.type}", code="bad_value")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dsa")
    except PackageNotFoundError:
        return "0+unknown"

"""The import pipeline: acquire → read → build → land, for one job.

``run(job_id)`` is the whole import, called by the Celery task:

1. claim the job (a redelivered task claims it again; an ended job is left
   alone), and run the rest in a child process with memory and CPU limits
   (``core.isolation``): a hostile file kills only the child;
2. **acquire** the file (the upload, or a URL's download) and the tables it
   holds (``acquire``), each with its format's reader (**read**:
   ``csv_reader``, ``excel_reader``, ``parquet_reader``);
3. **build** each table (``build``): parse, type, hash, match against the
   branch's version and store new chunks, the schema and the manifest;
4. **land** (``land``): the commit recorded and the branch moved by
   compare-and-swap from the head the import started from, in one short
   transaction with the job's success. When another writer moved the
   branch first, an append or upsert is rebased on the new head and tries
   again; anything else fails with 409 ``ref_conflict``.

Objects are content addressed and written before the ref moves, so a retry
rewrites nothing and produces the same commit id (its time is the job's
creation time), and a crash at any point leaves no partial commit visible.
"""

from __future__ import annotations

import contextlib
import errno
import random
import shutil
import time
import uuid
from pathlib import Path

import pyarrow as pa
import structlog
from pydantic import ValidationError

from core import audit, db, queue
from core.config import get_settings
from core.errors import DsaError
from core.isolation import killed_from_outside, out_of_cpu, run_isolated, signal_name
from core.objects import Commit, get_commit
from core.storage import COMPRESSED, get_store
from features.imports import lines
from features.imports.acquire import TableInput, source_file, tables_of
from features.imports.build import TableBuild, build_table
from features.imports.context import BuildContext, ImportJob
from features.imports.errors import ImportFailed, JobCancelled
from features.imports.land import land, rebase_table
from features.imports.progress import Progress
from features.jobs import service as jobs_service
from features.refs import service as refs_service
from features.refs.errors import RefConflict

log = structlog.get_logger(__name__)
MAX_ATTEMPTS = jobs_service.MAX_ATTEMPTS
REBASE_ATTEMPTS = 32
REBASE_BACKOFF_S = 0.02


def run(job_id: uuid.UUID) -> bool:
    """Run the job; False when another runner is at work on it (the caller
    tries again later: that runner may be dead and its heartbeat not yet stale)."""
    with db.transaction() as conn:
        row = jobs_service.claim(conn, job_id)
        if row is None:
            at_work = jobs_service.busy(conn, job_id)
    if row is None:
        log.info("job running elsewhere" if at_work else "job already ended", job_id=str(job_id))
        return not at_work
    try:
        job = ImportJob.from_row(row)
    except ValidationError:  # params no version of this code wrote: fail, do not retry
        log.exception("import params unreadable", job_id=str(job_id))
        with db.transaction() as conn:
            err = DsaError("the import failed because of an internal error; it has been logged")
            problem = err.to_problem(instance=f"/api/v1/jobs/{job_id}")
            jobs_service.fail(conn, job_id, problem, attempt=row["attempts"])
        if row.get("upload_id"):
            _drop_upload_of(row["upload_id"])
        return True
    # a directory per attempt: a superseded runner still alive never shares files
    work = get_settings().tmp_dir / f"job-{job_id}-{job.attempts}"
    again = False
    try:
        work.mkdir(parents=True, exist_ok=True)
        settings = get_settings()
        status = run_isolated(
            lambda: run_claimed(job, work),
            memory_bytes=settings.import_memory_limit_bytes,
            cpu_s=settings.import_cpu_limit_s,
            file_bytes=file_limit(),
        )
        if status and killed_from_outside(status) and job.attempts < MAX_ATTEMPTS:
            # SIGKILL comes from outside (an operator, the OOM killer): like a lost
            # worker, the job runs again; a file that kills every attempt fails
            log.warning("import child killed; the job runs again", job_id=str(job_id))
            jobs_service.requeue(job.id, job.attempts)  # claimable at once, not when stale
            queue.enqueue("imports.run", str(job_id))
            again = True
            return True
        if status:
            _child_failed(job, status)
    finally:
        # the upload goes with the job's end, not before (not when the job
        # runs again, by this worker or after it)
        try:
            if not again and jobs_service.ended(job.id):
                drop_upload(job)
        except Exception:  # the upload then waits for imports.clean_uploads
            log.exception("could not tell whether the job ended", job_id=str(job_id))
        shutil.rmtree(work, ignore_errors=True)
    return True


def run_claimed(job: ImportJob, work: Path) -> None:
    """The import of a claimed job (in the isolated child); every failure
    ends the job with a problem document."""
    started = time.monotonic()
    try:
        import_file(job, work)
        log.info("import done", job_id=str(job.id), seconds=round(time.monotonic() - started, 3))
    except JobCancelled:
        log.info("import cancelled", job_id=str(job.id))
    except DsaError as err:
        log.info("import failed", job_id=str(job.id), code=err.code, detail=err.detail)
        _fail(job, err)
    except (MemoryError, pa.ArrowMemoryError):
        limit = get_settings().import_memory_limit_bytes
        detail = f"the file needs more memory than an import may use ({limit} bytes)"
        _fail(job, ImportFailed(detail, code="too_much_memory"))
    except OSError as exc:
        if exc.errno != errno.EFBIG:
            log.exception("import crashed", job_id=str(job.id))
            _fail(
                job, DsaError("the import failed because of an internal error; it has been logged")
            )
            return
        detail = f"a file the import writes grew past the limit of {file_limit()} bytes"
        _fail(job, ImportFailed(detail, code="too_large", limit=file_limit()))
    except Exception:
        log.exception("import crashed", job_id=str(job.id))
        _fail(job, DsaError("the import failed because of an internal error; it has been logged"))


def file_limit() -> int:
    """The largest file an import child may write (RLIMIT_FSIZE): a download
    or an upload's copy, or a decompressed file, plus room for what is
    written beside them; a runaway writer stops there, not at a full disk."""
    s = get_settings()
    return max(s.max_upload_bytes, s.max_decompressed_bytes) + 1024**3


def _fail(job: ImportJob, err: DsaError) -> None:
    with db.transaction() as conn:
        jobs_service.fail(conn, job.id, err.to_problem(instance=job.instance), attempt=job.attempts)
        audit.record(
            conn,
            "import",
            actor=job.request.author,
            dataset_id=job.dataset_id,
            target=job.branch,
            outcome="failed",
            details={"job_id": str(job.id), "code": err.code},
        )


def _child_failed(job: ImportJob, status: int) -> None:
    """The child died without finishing the job: say how, unless it ended."""
    if out_of_cpu(status):
        detail = f"the import used more than {get_settings().import_cpu_limit_s} s of CPU"
        code = "too_much_cpu"
    elif (name := signal_name(status)) is not None:
        detail = (
            f"the parser process was killed by signal {name} "
            "(a malformed file, or not enough memory)"
        )
        code = "parser_crashed"
    else:
        detail = "the import process stopped unexpectedly; it has been logged"
        code = "parser_crashed"
    _fail(job, ImportFailed(detail, code=code))


def drop_upload(job: ImportJob) -> None:
    upload = job.request.upload
    if upload is not None:
        get_store().delete(upload.object_key)
    elif job.upload_id:
        _drop_upload_of(job.upload_id)


def _drop_upload_of(upload_id: uuid.UUID) -> None:
    """Delete an upload known only by its id: stored as it came or compressed."""
    for suffix in ("", COMPRESSED):
        get_store().delete(f"uploads/{upload_id.hex}{suffix}")


def import_file(job: ImportJob, work: Path) -> None:
    """Import the job's file onto its branch; see the module docstring and
    "Concurrent writers" in docs/architecture.md for what happens when the
    branch moves while the import runs."""
    store = get_store()
    request = job.request
    expected = request.expected_commit_id
    head = _head(job)
    if expected is not None and expected != head:
        raise branch_moved(job.branch, expected, head, mode=request.mode, stale=True)
    ctx = BuildContext(store, work, request, Progress(job.id, job.attempts))
    with source_file(store, request, job.id, work, ctx.progress) as (path, source):
        try:
            found = tables_of(path, request, work)
            parent = get_commit(store, head)
            built = {
                t.name: build_table(
                    ctx, t, parent.tables.get(t.name), lines_at=(job.dataset_id, job.branch)
                )
                for t in found
            }
            _save_line_indexes(job, built)
            _land_rebasing(job, ctx, source, found, head, parent, built)
        except ImportFailed as err:
            err.extra.setdefault("file", source["file_name"])
            raise


def _head(job: ImportJob) -> str:
    with db.transaction() as conn:
        return str(refs_service.get_branch(conn, job.dataset_id, job.branch)["commit_id"])


def _save_line_indexes(job: ImportJob, built: dict[str, TableBuild]) -> None:
    """The line indexes are on disk before the job says it succeeded (a
    client may upload the next version at once); one whose version does not
    land is never used (``lines.load`` checks the manifest)."""
    for name, table in built.items():
        if table.index is not None:
            with contextlib.suppress(OSError, DsaError):  # a cache: losing it costs speed
                lines.save(job.dataset_id, job.branch, name, table.index)


def _land_rebasing(
    job: ImportJob,
    ctx: BuildContext,
    source: dict[str, object],
    found: list[TableInput],
    head: str,
    parent: Commit,
    built: dict[str, TableBuild],
) -> None:
    """Land; while another writer keeps moving the branch first, rebase an
    append or upsert on its new head (with a jittered back-off) and land
    again, up to ``REBASE_ATTEMPTS`` times."""
    request = job.request
    rebases = 0
    while not land(job, source, head, parent, built, rebases):
        moved_to = _head(job)
        if request.expected_commit_id is not None or request.mode == "replace":
            stale = request.expected_commit_id is not None
            raise branch_moved(job.branch, head, moved_to, mode=request.mode, stale=stale)
        if rebases >= REBASE_ATTEMPTS:
            raise RefConflict(
                f"branch {job.branch!r} moved {rebases + 1} times while this {request.mode} "
                "tried to land on it, each time before it could; nothing was "
                "changed: upload the file again",
                branch=job.branch,
                expected_commit_id=head,
                actual_commit_id=moved_to,
                attempts=rebases + 1,
            )
        rebases += 1
        # back off with jitter so racing writers do not keep colliding
        time.sleep(random.uniform(0, min(REBASE_BACKOFF_S * 2**rebases, 1.0)))
        moved_to = _head(job)
        ctx.progress.update()  # heartbeat; notices a cancel
        ctx.progress.check()
        new_parent = get_commit(ctx.store, moved_to)
        log.info("branch moved; rebasing", job_id=str(job.id), onto=moved_to[:12])
        built = {
            t.name: rebase_table(
                ctx.store,
                request.mode,
                built[t.name],
                parent.tables.get(t.name),
                new_parent.tables.get(t.name),
            )
            or build_table(ctx, t, new_parent.tables.get(t.name))
            for t in found
        }
        head, parent = moved_to, new_parent


def branch_moved(branch: str, expected: str, actual: str, *, mode: str, stale: bool) -> RefConflict:
    """The 409 for an import that may not land because the branch is elsewhere:
    ``stale`` when the client named ``expected_commit_id``, else a replace that
    lost the race (a replace is never rebased: it would drop the other change)."""
    if stale:
        detail = (
            f"branch {branch!r} is at {actual[:12]}, not at the expected_commit_id "
            f"{expected[:12]}: it moved since that commit was read. Nothing was changed; "
            "look at the new head and upload again with expected_commit_id set to it, "
            "or without expected_commit_id to import onto whatever the head is"
        )
    else:
        detail = (
            f"branch {branch!r} moved while this {mode} import ran (from {expected[:12]} "
            f"to {actual[:12]}); a {mode} is not rebased, since it would silently undo "
            "the other change. Nothing was changed; upload the file again to replace "
            "the table on the new head, or use mode=append or upsert, which are rebased"
        )
    return RefConflict(
        detail,
        branch=branch,
        expected_commit_id=expected,
        actual_commit_id=actual,
    )

"""The import pipeline: acquire → read → build → land, for one job.

``run(job_id)`` is the whole import, called by the Celery task:

1. claim the job (a redelivered task claims it again; an ended job is left
   alone), and build it in a sandboxed child process (``sandbox``: no
   database, no secrets, memory, CPU and file-size limits): a hostile file
   kills only the child, and reaches nothing but the object store;
2. (in the child) **acquire** the file (the upload, or a URL's download) and the tables it
   holds (``acquire``), each with its format's reader (**read**:
   ``csv_reader``, ``excel_reader``, ``parquet_reader``);
3. (in the child) **build** each table (``build``): parse, type, hash, match against the
   branch's version and store new chunks, the schema and the manifest;
4. (in the worker) **land** (``land``): the commit recorded and the branch moved by
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
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import structlog
from pydantic import ValidationError

from core import audit, db, queue
from core.config import get_settings
from core.errors import DsaError
from core.isolation import killed_from_outside, out_of_cpu, signal_name
from core.objects import get_commit
from core.storage import COMPRESSED, get_store
from features.imports import lines, sandbox
from features.imports.acquire import source_file, tables_of
from features.imports.build import TableBuild, build_table
from features.imports.context import BuildContext, ImportJob
from features.imports.errors import ImportFailed, JobCancelled
from features.imports.land import land, rebase_table
from features.imports.progress import Progress
from features.imports.sandbox import ChildDied
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
            problem = _internal().to_problem(instance=f"/api/v1/jobs/{job_id}")
            jobs_service.fail(conn, job_id, problem, attempt=row["attempts"])
        if row.get("upload_id"):
            _drop_upload_of(row["upload_id"])
        return True
    # a directory per attempt: a superseded runner still alive never shares files
    work = get_settings().tmp_dir / f"job-{job_id}-{job.attempts}"
    again = False
    try:
        work.mkdir(parents=True, exist_ok=True)
        again = not run_claimed(job, work)
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


def run_claimed(job: ImportJob, work: Path, *, isolated: bool = True) -> bool:
    """The import of a claimed job: built in a sandboxed child (``isolated``;
    in this process for tests that need to reach into it), landed here.
    Every failure ends the job with a problem document; False when the child
    was killed from outside and the job went back to the queue."""
    started = time.monotonic()
    try:
        import_file(job, work, isolated=isolated)
        log.info("import done", job_id=str(job.id), seconds=round(time.monotonic() - started, 3))
    except JobCancelled:
        log.info("import cancelled", job_id=str(job.id))
    except ChildDied as died:
        if killed_from_outside(died.status) and job.attempts < MAX_ATTEMPTS:
            # SIGKILL comes from outside (an operator, the OOM killer): like a lost
            # worker, the job runs again; a file that kills every attempt fails
            log.warning("import child killed; the job runs again", job_id=str(job.id))
            jobs_service.requeue(job.id, job.attempts)  # claimable at once, not when stale
            queue.enqueue("imports.run", str(job.id))
            return False
        _child_failed(job, died.status)
    except DsaError as err:
        log.info("import failed", job_id=str(job.id), code=err.code, detail=err.detail)
        _fail(job, err)
    except Exception:
        log.exception("import crashed", job_id=str(job.id))
        _fail(job, _internal())
    return True


def _internal() -> DsaError:
    return DsaError("the import failed because of an internal error; it has been logged")


def _outcome(build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The result document of ``build`` (in the child): what it built, or
    the problem that ended it."""
    try:
        return build()
    except DsaError as err:
        return {"problem": err.to_problem()}
    except (MemoryError, pa.ArrowMemoryError):
        limit = get_settings().import_memory_limit_bytes
        detail = f"the file needs more memory than an import may use ({limit} bytes)"
        return {"problem": ImportFailed(detail, code="too_much_memory").to_problem()}
    except OSError as exc:
        if exc.errno != errno.EFBIG:
            log.exception("import crashed")
            return {"problem": _internal().to_problem()}
        limit = sandbox.file_limit()
        detail = f"a file the import writes grew past the limit of {limit} bytes"
        return {"problem": ImportFailed(detail, code="too_large", limit=limit).to_problem()}
    except JobCancelled:
        raise
    except Exception:
        log.exception("import crashed")
        return {"problem": _internal().to_problem()}


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


def import_file(job: ImportJob, work: Path, *, isolated: bool = True) -> None:
    """Import the job's file onto its branch: built (in the sandbox, when
    ``isolated``) on the head read here, then landed; see the module
    docstring and "Concurrent writers" in docs/architecture.md for what
    happens when the branch moves while the import runs."""
    request = job.request
    expected = request.expected_commit_id
    head = _head(job)
    if expected is not None and expected != head:
        raise branch_moved(job.branch, expected, head, mode=request.mode, stale=True)

    def build(at: str) -> tuple[dict[str, Any], dict[str, TableBuild]]:
        return _build(job, Path(tempfile.mkdtemp(dir=work)), at, isolated)

    source, built = build(head)
    _land_rebasing(job, source, head, built, build)


def _build(
    job: ImportJob, work: Path, head: str, isolated: bool
) -> tuple[dict[str, Any], dict[str, TableBuild]]:
    """The file's tables built on ``head`` (by the sandboxed child when
    ``isolated``) and its provenance; ``ChildProblem`` when the file cannot
    be imported."""

    def build(progress: Progress) -> dict[str, Any]:
        return _outcome(lambda: build_tables(job, work, head, progress))

    if isolated:
        doc = sandbox.build_isolated(job, work, build)
    else:
        doc = build(Progress(job.id, job.attempts))
    return sandbox.decode(doc)


def build_tables(job: ImportJob, work: Path, head: str, progress: Progress) -> dict[str, Any]:
    """Acquire the file and build each of its tables on the branch's ``head``
    (in the sandboxed child): the result document ``sandbox.decode`` reads."""
    store = get_store()
    request = job.request
    ctx = BuildContext(store, work, request, progress)
    parent = get_commit(store, head)
    with source_file(store, request, work, progress) as (path, source):
        if path is None:  # a schedule's file, not modified since its last run
            return sandbox.encode(source, {})
        try:
            built = {
                t.name: build_table(
                    ctx, t, parent.tables.get(t.name), lines_at=(job.dataset_id, job.branch)
                )
                for t in tables_of(path, request, work)
            }
            _save_line_indexes(job, built)
        except ImportFailed as err:
            err.extra.setdefault("file", source["file_name"])
            raise
    return sandbox.encode(source, built)


def _head(job: ImportJob) -> str:
    with db.transaction() as conn:
        return str(refs_service.get_branch(conn, job.dataset_id, job.branch)["commit_id"])


def _save_line_indexes(job: ImportJob, built: dict[str, TableBuild]) -> None:
    """The line indexes are on disk before the job says it succeeded (a
    client may upload the next version at once); one whose version does not
    land is never used (``lines.load`` checks the manifest)."""
    for name, table in built.items():
        if table.index is not None:
            try:
                with contextlib.suppress(OSError, DsaError):  # a cache: losing it costs speed
                    lines.save(job.dataset_id, job.branch, name, table.index)
            finally:
                table.index.hashes.path.unlink(missing_ok=True)


def _land_rebasing(
    job: ImportJob,
    source: dict[str, Any],
    head: str,
    built: dict[str, TableBuild],
    rebuild: Callable[[str], tuple[dict[str, Any], dict[str, TableBuild]]],
) -> None:
    """Land; while another writer keeps moving the branch first, rebase an
    append or upsert on its new head (with a jittered back-off) and land
    again, up to ``REBASE_ATTEMPTS`` times. A table the new head changed so
    that only reading the file again can tell is ``rebuild`` on it."""
    request = job.request
    store = get_store()
    parent = get_commit(store, head)
    progress = Progress(job.id, job.attempts)
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
        progress.update(bytes_read=source["size"])  # heartbeat; notices a cancel
        progress.check()
        new_parent = get_commit(store, moved_to)
        log.info("branch moved; rebasing", job_id=str(job.id), onto=moved_to[:12])
        rebased = {
            name: rebase_table(
                store, request.mode, b, parent.tables.get(name), new_parent.tables.get(name)
            )
            for name, b in built.items()
        }
        if all(b is not None for b in rebased.values()):
            built = {name: b for name, b in rebased.items() if b is not None}
        else:
            source, built = rebuild(moved_to)
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

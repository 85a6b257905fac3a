"""The import's sandbox: a file is read in a child that holds no database.

The worker (``pipeline``) claims the job and lands it; between the two, a
forked child (``core.isolation``: memory, CPU-time and file-size limits)
acquires the file, reads, types, hashes and stores its tables, and hands
back what it built as a small JSON document. Before it opens the file the
child is confined (``confine``):

- no database: the inherited pool is dropped, every inherited socket (the
  database's, the broker's, the object store's keep-alives) is replaced by
  ``/dev/null``, and the database and Redis URLs are forgotten, so neither
  a bug nor a parser exploited by the file reaches a table or a queue;
- no secrets: the settings forget ``DSA_JWT_SECRET`` and every other
  credential but the object store's, keeping only the two keys the line
  path needs (``line-hash``, ``line-index``), and the environment loses
  them too;
- its progress and the file's size go to the worker through a pipe
  (``Relay``), which records them on the job, keeps its heartbeat, and
  kills the child when the job is cancelled.

What the child keeps, by need: write access to the object store (the
chunks, schemas and manifests it builds; all content addressed, checked by
``dsa fsck --deep``), the network (a URL import downloads there) and the
job's scratch directory. docs/security.md says what this does not defend.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core import db
from core.config import CONFINED_DROPS, get_settings
from core.errors import DsaError
from core.isolation import run_isolated
from core.objects import TableEntry
from features.imports.build import TableBuild
from features.imports.context import ImportJob
from features.imports.errors import JobCancelled
from features.imports.progress import PROGRESS_EVERY_S, Progress
from features.jobs import service as jobs_service

log = structlog.get_logger(__name__)
CHILD_KEYS = ("line-hash", "line-index")
# names a child's environment loses besides DSA_<setting> for CONFINED_DROPS
CREDENTIAL_ENV = ("DATABASE_URL", "PGPASSWORD", "PGPASSFILE", "REDIS_URL", "CELERY_BROKER_URL")
RESULT_NAME = "built.json"
MAX_RESULT_BYTES = 64 * 1024**2
MAX_MESSAGE = 256  # bytes of one progress line: a longer one is dropped


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_id: str = Field(pattern=r"^[0-9a-f]{64}$")
    manifest: str = Field(pattern=r"^[0-9a-f]{64}$")
    row_count: int = Field(ge=0)
    result: dict[str, Any]
    dialect: dict[str, Any]
    disjoint: bool = False


class _Built(BaseModel):
    """What a child hands back: the tables it built and the file's
    provenance, or the problem that ended the import."""

    model_config = ConfigDict(extra="forbid")
    source: dict[str, Any] | None = None
    tables: dict[str, _Table] | None = None
    problem: dict[str, Any] | None = None


class ChildProblem(DsaError):
    """The problem document the child ended the import with, as it wrote it."""

    def __init__(self, problem: dict[str, Any]) -> None:
        super().__init__(str(problem.get("detail", "")))
        code = problem.get("code")
        if isinstance(code, str):
            self.code = code  # the child's problem's own code (a file problem's reason)
        self.problem = problem

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        return {**self.problem, **({"instance": instance} if instance else {})}


class ChildDied(Exception):
    """The child ended without handing back a result; ``status`` is its wait status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"import child ended with status {status}")
        self.status = status


def encode(source: dict[str, Any], built: dict[str, TableBuild]) -> dict[str, Any]:
    """What the child hands back for its ``built`` tables."""
    tables = {
        name: {
            "schema_id": t.entry.schema,
            "manifest": t.entry.manifest,
            "row_count": t.entry.row_count,
            "result": t.result,
            "dialect": t.dialect,
            "disjoint": t.disjoint,
        }
        for name, t in built.items()
    }
    return {"source": source, "tables": tables}


def decode(doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, TableBuild]]:
    """The tables and provenance a child handed back; ``ChildProblem`` when it
    ended the import with a problem. A document no child of this code
    writes is an internal error (logged), never trusted."""
    try:
        got = _Built.model_validate(doc)
    except ValidationError:
        log.error("import child handed back an unreadable result")
        raise DsaError(
            "the import failed because of an internal error; it has been logged"
        ) from None
    if got.problem is not None:
        raise ChildProblem(got.problem)
    if got.source is None or not (got.tables or got.source.get("not_modified") is True):
        raise DsaError("the import failed because of an internal error; it has been logged")
    built = {
        name: TableBuild(
            TableEntry(t.schema_id, t.manifest, t.row_count),
            t.result,
            t.dialect,
            disjoint=t.disjoint,
        )
        for name, t in (got.tables or {}).items()
    }
    return got.source, built


def build_isolated(
    job: ImportJob, work: Path, build: Callable[[Progress], dict[str, Any]]
) -> dict[str, Any]:
    """Run ``build`` (returning the result document) in a confined child and
    return what it handed back. ``JobCancelled`` when the job was cancelled
    (the child is killed); ``ChildDied`` when the child ended another way."""
    settings = get_settings()
    result = work / RESULT_NAME
    result.unlink(missing_ok=True)
    read_end, write_end = os.pipe()
    relay = Relay(job)

    def child() -> None:  # pragma: no cover - runs in the child
        os.close(read_end)
        confine()
        pipe = os.fdopen(write_end, "wb", buffering=0)
        progress = Progress(
            job.id,
            job.attempts,
            report=lambda rows, n: _send(pipe, f"p {rows} {n}\n"),
            total=lambda n: None if _send(pipe, f"t {n}\n") else None,
        )
        doc = build(progress)
        tmp = result.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, default=str))
        tmp.rename(result)

    def watch(pid: int) -> int:
        os.close(write_end)
        return relay.follow(pid, read_end)

    try:
        status = run_isolated(
            child,
            memory_bytes=settings.import_memory_limit_bytes,
            cpu_s=settings.import_cpu_limit_s,
            file_bytes=file_limit(),
            watch=watch,
        )
    finally:
        for fd in (read_end, write_end):
            with contextlib.suppress(OSError):
                os.close(fd)
    if relay.cancelled:
        raise JobCancelled
    if status:
        raise ChildDied(status)
    try:
        if result.stat().st_size > MAX_RESULT_BYTES:
            raise DsaError("the import failed because of an internal error; it has been logged")
        return dict(json.loads(result.read_bytes()))
    except (OSError, ValueError, TypeError):
        log.error("import child left no readable result", job_id=str(job.id))
        raise DsaError(
            "the import failed because of an internal error; it has been logged"
        ) from None


def file_limit() -> int:
    """The largest file an import child may write (RLIMIT_FSIZE): a download
    or an upload's copy, or a decompressed file, plus room for what is
    written beside them; a runaway writer stops there, not at a full disk."""
    s = get_settings()
    return max(s.max_upload_bytes, s.max_decompressed_bytes) + 1024**3


def confine() -> None:
    """Leave this (forked) process without the database, the broker or any
    secret but the line path's keys; see the module docstring."""
    db.forget_pool_after_fork()
    _blind_inherited_sockets()
    get_settings().confine(CHILD_KEYS)
    for name in (*(f"DSA_{n.upper()}" for n in CONFINED_DROPS), *CREDENTIAL_ENV):
        os.environ.pop(name, None)


def _blind_inherited_sockets() -> None:
    """Point every inherited socket (beyond stdin/out/err) at /dev/null: the
    descriptor number stays valid, so nothing that still holds it writes to a
    reused number, but the connection is out of reach. The parent's own
    descriptors are untouched (a fork's are copies)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # not Linux: the pool is dropped, the URLs forgotten
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for fd in fds:
            if fd <= 2 or fd == null:
                continue
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(os.fstat(fd).st_mode):
                    os.dup2(null, fd)
    finally:
        os.close(null)


def _send(pipe: Any, line: str) -> bool:
    with contextlib.suppress(OSError):
        pipe.write(line.encode())
    return True  # a cancel reaches the child as SIGKILL, not as an answer


class Relay:
    """The worker's side of the child's pipe: progress onto the job row (at
    most every ``PROGRESS_EVERY_S``, which is also the job's heartbeat), and
    the child killed when the job was cancelled or claimed by another runner."""

    def __init__(self, job: ImportJob) -> None:
        self.job = job
        self.rows = 0
        self.bytes = 0
        self.cancelled = False

    def follow(self, pid: int, fd: int) -> int:
        """Relay until the child ends; its wait status."""
        pending = b""
        last = 0.0  # the child's first report goes to the job at once
        while True:
            ready, _, _ = select.select([fd], [], [], PROGRESS_EVERY_S)
            data = os.read(fd, 4096) if ready else b""
            pending = self._take(pending + data)
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                return self._ended(status, usage)
            if time.monotonic() - last >= PROGRESS_EVERY_S and not self.cancelled:
                last = time.monotonic()
                if not self._report():
                    self.cancelled = True
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            if ready and not data:  # the child closed its end: wait for it
                _, status, usage = os.wait4(pid, 0)
                return self._ended(status, usage)

    def _ended(self, status: int, usage: resource.struct_rusage) -> int:
        """Log what the child used (its peak memory, its CPU time): the
        figures behind ``DSA_IMPORT_MEMORY_LIMIT_BYTES`` and the hostile-file
        tests' bounds."""
        log.info(
            "import child ended",
            job_id=str(self.job.id),
            status=status,
            peak_rss_bytes=usage.ru_maxrss * 1024,  # Linux: kilobytes
            cpu_s=round(usage.ru_utime + usage.ru_stime, 3),
        )
        return status

    def _take(self, buffer: bytes) -> bytes:
        """Apply each whole line of ``buffer``; the rest waits for more."""
        *lines, rest = buffer.split(b"\n")
        for line in lines:
            parts = line.split()
            if len(line) > MAX_MESSAGE or len(parts) < 2 or not all(p.isdigit() for p in parts[1:]):
                continue
            numbers = [min(int(p), 2**62) for p in parts[1:]]
            if parts[0] == b"p" and len(numbers) == 2:
                self.rows, self.bytes = numbers
            elif parts[0] == b"t" and len(numbers) == 1:
                try:
                    jobs_service.set_total_bytes(self.job.id, numbers[0])
                except Exception:  # a figure shown to the user: the import goes on
                    log.warning("could not record a file's size", job_id=str(self.job.id))
        return rest[-MAX_MESSAGE:]

    def _report(self) -> bool:
        try:
            return jobs_service.report_progress(
                self.job.id, rows=self.rows, bytes_read=self.bytes, attempt=self.job.attempts
            )
        except Exception:  # the database away for a moment: the child goes on
            log.warning("could not record an import's progress", job_id=str(self.job.id))
            return True

"""Imports: turn an uploaded file into a commit on a branch.

``run(job_id)`` is the whole import, called by the Celery task:

1. claim the job (a redelivered task claims it again; an ended job is left alone);
2. parse the file in bounded memory (``csv_reader``), infer each column's type
   from all of its values, and convert, hash (one C call per chunk) and store
   the rows in chunks of ``chunk_rows`` as they come; when a late value widens
   a type, read the file once more with the final types;
3. store the schema, the manifest and the commit objects;
4. in one transaction: mirror the commit, move the branch by compare-and-swap
   from the head the import started from, mark the job succeeded; when another
   writer moved the branch first, an append or upsert is rebased on the new
   head and tries again, anything else fails with 409 ``ref_conflict``.

Objects are content addressed and written before the ref moves, so a retry
rewrites nothing and produces the same commit id (its time is the job's
creation time), and a crash at any point leaves no partial commit visible.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import random
import resource
import shutil
import signal
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import structlog

from core import db, queue
from core.config import get_settings
from core.errors import Conflict, DsaError, Unavailable
from core.objects import (
    Commit,
    Manifest,
    Piece,
    Schema,
    TableEntry,
    commit_time,
    get_commit,
    get_manifest,
    get_schema,
    put_object,
)
from core.schema import Column
from core.storage import get_store
from features.commits import service as commits_service
from features.imports import lines
from features.imports.archives import extract
from features.imports.chunking import ChunkWriter, assemble, columns_of
from features.imports.csv_reader import CsvSource, ImportFailed, PreferenceMissed, sniff
from features.imports.dedup import DedupWriter, UpsertWriter
from features.imports.excel_reader import ExcelSource, check_expansion, sheet_names
from features.imports.fetch import fetch, filename_of
from features.imports.formats import (
    SUPPORTED_EXTENSIONS,
    detect_format,
    table_name_from_file,
    table_name_from_sheet,
    validate_options,
)
from features.imports.parquet_reader import ParquetSource
from features.imports.source import TableSource
from features.jobs import service as jobs_service
from features.refs import service as refs_service

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "SUPPORTED_MODES",
    "detect_format",
    "enqueue_after_commit",
    "filename_of",
    "run",
    "table_name_from_file",
    "validate_options",
]

log = structlog.get_logger(__name__)
SUPPORTED_MODES = ("replace", "append", "upsert")
IMPORTER = "dsa.import/1"
PROGRESS_EVERY_S = 0.5
MAX_ATTEMPTS = jobs_service.MAX_ATTEMPTS
# calamine holds a whole sheet in memory: workbooks expanding past this are refused
EXCEL_MAX_EXPANDED_BYTES = 2 * 1024**3


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


class JobCancelled(Exception):
    """The job was cancelled while it ran: stop, commit nothing."""


class _Progress:
    def __init__(self, job_id: uuid.UUID) -> None:
        self.job_id = job_id
        self.rows = 0
        self.bytes = 0
        self._last = 0.0
        self.cancelled = False

    def update(self, *, rows: int | None = None, bytes_read: int | None = None) -> None:
        if rows is not None:
            self.rows = rows
        if bytes_read is not None:
            self.bytes = bytes_read
        now = time.monotonic()
        if now - self._last >= PROGRESS_EVERY_S:
            self._last = now
            if not jobs_service.report_progress(self.job_id, rows=self.rows, bytes_read=self.bytes):
                self.cancelled = True  # may run on Arrow's reader thread: raise in check()

    def check(self) -> None:
        if self.cancelled:
            raise JobCancelled


def run(job_id: uuid.UUID) -> None:
    with db.transaction() as conn:
        job = jobs_service.claim(conn, job_id)
    if job is None:
        log.info("job already ended", job_id=str(job_id))
        return
    work = get_settings().tmp_dir / f"job-{job_id}"
    again = False
    try:
        work.mkdir(parents=True, exist_ok=True)
        status = _in_child(lambda: _run_claimed(job, work))
        if status and _killed_from_outside(status) and job["attempts"] < MAX_ATTEMPTS:
            # SIGKILL comes from outside (an operator, the OOM killer): like a lost
            # worker, the job runs again; a file that kills every attempt fails
            log.warning("import child killed; the job runs again", job_id=str(job_id))
            queue.enqueue("imports.run", str(job_id))
            again = True
            return
        if status:
            _child_failed(job, status)
    finally:
        if not again:
            _drop_upload(job)  # the upload goes with the job's end, not before
        shutil.rmtree(work, ignore_errors=True)


def _run_claimed(job: dict[str, Any], work: Path) -> None:
    job_id = job["id"]
    started = time.monotonic()
    try:
        _import(job, work)
        log.info("import done", job_id=str(job_id), seconds=round(time.monotonic() - started, 3))
    except JobCancelled:
        log.info("import cancelled", job_id=str(job_id))
    except Exception as exc:
        if isinstance(exc, DsaError):
            err = exc
            log.info("import failed", job_id=str(job_id), code=err.code, detail=err.detail)
        elif isinstance(exc, (MemoryError, pa.ArrowMemoryError)):
            err = ImportFailed(
                "the file needs more memory than an import may use "
                f"({get_settings().import_memory_limit_bytes} bytes)",
                code="too_much_memory",
            )
        else:
            log.exception("import crashed", job_id=str(job_id))
            err = DsaError("the import failed because of an internal error; it has been logged")
        with db.transaction() as conn:
            jobs_service.fail(conn, job_id, err.to_problem(instance=f"/api/v1/jobs/{job_id}"))


def _in_child(fn: Any) -> int:
    """Run ``fn`` in a forked child with memory and CPU-time limits; returns its
    wait status (0: it returned). A parser library may abort, segfault or
    balloon on a hostile file: then only the child dies, and the worker goes on.
    (``os.fork`` rather than multiprocessing: Celery's pool processes are
    daemonic and may not start multiprocessing children.)"""
    settings = get_settings()
    gc.freeze()  # the child's collector leaves the parent's objects (and pages) alone
    pid = os.fork()
    if pid:
        gc.unfreeze()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            _die_with_parent()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            db.forget_pool_after_fork()
            if settings.import_memory_limit_bytes:
                limit = settings.import_memory_limit_bytes
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            if settings.import_cpu_limit_s:
                cpu = settings.import_cpu_limit_s
                resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
            fn()
            code = 0
        except BaseException:  # noqa: BLE001 - the child reports through the job row
            log.exception("import child failed")
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def _killed_from_outside(status: int) -> bool:
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _child_failed(job: dict[str, Any], status: int) -> None:
    """The child died without finishing the job: say how, unless it ended."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig == signal.SIGXCPU:
            detail = f"the import used more than {get_settings().import_cpu_limit_s} s of CPU"
            code = "too_much_cpu"
        else:
            detail = (
                f"the parser process was killed by signal {signal.Signals(sig).name} "
                "(a malformed file, or not enough memory)"
            )
            code = "parser_crashed"
    else:
        detail = "the import process stopped unexpectedly; it has been logged"
        code = "parser_crashed"
    err = ImportFailed(detail, code=code)
    with db.transaction() as conn:
        jobs_service.fail(conn, job["id"], err.to_problem(instance=f"/api/v1/jobs/{job['id']}"))


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def _drop_upload(job: dict[str, Any]) -> None:
    if job.get("upload_id"):
        get_store().delete(f"uploads/{job['upload_id'].hex}")


def _import(job: dict[str, Any], work: Path) -> None:
    """Import the job's file onto its branch; see the module docstring and
    "Concurrent writers" in docs/architecture.md for what happens when the
    branch moves while the import runs."""
    store = get_store()
    params = job["params"]
    mode = params["mode"]
    dataset_id: uuid.UUID = job["dataset_id"]
    branch: str = job["ref_name"]
    expected = params.get("expected_commit_id")
    with db.transaction() as conn:
        head = refs_service.get_branch(conn, dataset_id, branch)["commit_id"]
    if expected is not None and expected != head:
        raise branch_moved(branch, expected, head, mode=mode, stale=True)
    parent = get_commit(store, head)
    progress = _Progress(job["id"])
    with _source_file(store, job, work, progress) as (path, upload):
        filename = upload["file_name"]
        try:
            found = _tables_of(path, params, work)
            built: dict[str, tuple[TableEntry, dict[str, Any], dict[str, Any]]] = {}
            indexes: dict[str, lines.LineIndex] = {}
            for table_name, table_path, source, fmt in found:
                built[table_name] = _import_table(
                    store,
                    work,
                    {**params, "format": fmt},
                    progress,
                    table_path,
                    source,
                    parent.tables.get(table_name),
                    lines_at=(dataset_id, branch, table_name),
                    indexes=indexes,
                )
            # the line indexes are on disk before the job says it succeeded (a
            # client may upload the next version at once); one whose version
            # does not land is never used (``lines.load`` checks the manifest)
            for table_name, index in indexes.items():
                with contextlib.suppress(OSError):  # a cache: losing it costs speed
                    lines.save(dataset_id, branch, table_name, index)
            rebases = 0
            while True:
                if _land(job, upload, head, parent, built, rebases):
                    return
                # another writer moved the branch first (the ref CAS lost)
                with db.transaction() as conn:
                    moved_to = refs_service.get_branch(conn, dataset_id, branch)["commit_id"]
                if expected is not None or mode == "replace":
                    raise branch_moved(
                        branch, head, moved_to, mode=mode, stale=expected is not None
                    )
                if rebases >= REBASE_ATTEMPTS:
                    raise Conflict(
                        f"branch {branch!r} moved {rebases + 1} times while this {mode} "
                        "tried to land on it, each time before it could; nothing was "
                        "changed: upload the file again",
                        code="ref_conflict",
                        branch=branch,
                        expected_commit_id=head,
                        actual_commit_id=moved_to,
                        attempts=rebases + 1,
                    )
                rebases += 1
                # back off with jitter so racing writers do not keep colliding
                time.sleep(random.uniform(0, min(REBASE_BACKOFF_S * 2**rebases, 1.0)))
                with db.transaction() as conn:
                    moved_to = refs_service.get_branch(conn, dataset_id, branch)["commit_id"]
                progress.update()  # heartbeat; notices a cancel
                progress.check()
                new_parent = get_commit(store, moved_to)
                log.info("branch moved; rebasing", job_id=str(job["id"]), onto=moved_to[:12])
                rebuilt = {}
                for table_name, table_path, source, fmt in found:
                    rebuilt[table_name] = _rebase_table(
                        store,
                        mode,
                        built[table_name],
                        parent.tables.get(table_name),
                        new_parent.tables.get(table_name),
                    ) or _import_table(
                        store,
                        work,
                        {**params, "format": fmt},
                        progress,
                        table_path,
                        source,
                        new_parent.tables.get(table_name),
                    )
                head, parent, built = moved_to, new_parent, rebuilt
        except ImportFailed as err:
            err.extra.setdefault("file", filename)
            raise


REBASE_ATTEMPTS = 32
REBASE_BACKOFF_S = 0.02


def branch_moved(branch: str, expected: str, actual: str, *, mode: str, stale: bool) -> Conflict:
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
    return Conflict(
        detail,
        code="ref_conflict",
        branch=branch,
        expected_commit_id=expected,
        actual_commit_id=actual,
    )


def _land(
    job: dict[str, Any],
    upload: dict[str, Any],
    head: str,
    parent: Commit,
    built: dict[str, tuple[TableEntry, dict[str, Any], dict[str, Any]]],
    rebases: int,
) -> bool:
    """Commit the tables on ``head`` and move the branch there by compare-and-swap,
    in one transaction with the job's success; False when the branch is no
    longer at ``head`` (nothing is then recorded)."""
    params = job["params"]
    dataset_id: uuid.UUID = job["dataset_id"]
    branch: str = job["ref_name"]
    filename = upload["file_name"]
    tables = dict(parent.tables)
    results = []
    for name, (entry, res, _) in built.items():
        tables[name] = entry
        results.append({"table": name, **res})
    rows = sum(r["rows"] for r in results)
    result: dict[str, Any] = (
        dict(results[0]) if len(results) == 1 else {"rows": rows, "tables": results}
    )
    if rebases:
        result["rebases"] = rebases
    progress_done = {"rows": rows, "bytes_read": upload["size"]}

    if tables == parent.tables:
        with db.transaction() as conn:
            if not jobs_service.still_running(conn, job["id"]):
                raise JobCancelled
            # nothing to commit; still, the file's table is what the branch holds
            # only if the branch is still where the import read it
            if refs_service.get_branch(conn, dataset_id, branch)["commit_id"] != head:
                return False
            jobs_service.succeed(
                conn,
                job["id"],
                commit_id=head,
                result={**result, "unchanged": True},
                **progress_done,
            )
        return True

    names = list(built)
    dialects = {name: dialect for name, (_, _, dialect) in built.items()}
    commit = Commit(
        parents=(head,),
        tables=tables,
        author=params.get("author", "unknown"),
        created_at=commit_time(job["created_at"]),
        message=params.get("message") or f"Import {filename}",
        provenance={
            "source": upload,
            "table": names[0] if len(names) == 1 else names,
            "mode": params["mode"],
            "format": params["format"],
            "dialect": dialects[names[0]] if len(names) == 1 else dialects,
            "options": params.get("options") or {},
            "importer": IMPORTER,
            "dsa_version": _version(),
            "job_id": str(job["id"]),
        },
    )
    try:
        with db.transaction() as conn:
            if not jobs_service.still_running(conn, job["id"]):
                raise JobCancelled
            commit_id = commits_service.record(conn, dataset_id=dataset_id, commit=commit)
            refs_service.cas_move(
                conn,
                dataset_id=dataset_id,
                name=branch,
                new=commit_id,
                expected=head,
                by=params.get("author", "unknown"),
                reason=f"import ({params['mode']}) of {filename}"
                + (f", rebased {rebases}x" if rebases else ""),
            )
            jobs_service.succeed(
                conn, job["id"], commit_id=commit_id, result=result, **progress_done
            )
    except Conflict as err:
        if err.code != "ref_conflict":
            raise
        return False  # the transaction rolled back: no commit row, no ref move
    return True


def _rebase_table(
    store: Any,
    mode: str,
    built: tuple[TableEntry, dict[str, Any], dict[str, Any]],
    base: TableEntry | None,
    onto: TableEntry | None,
) -> tuple[TableEntry, dict[str, Any], dict[str, Any]] | None:
    """The table the import ``built`` on ``base``, rebuilt on the new head's
    version ``onto`` without reading the file again; None when only a re-run of
    the import can tell (an upsert onto a changed table, an append onto a table
    whose columns changed)."""
    entry, result, dialect = built
    if onto == base:
        return built  # the other writer left this table alone
    if mode != "append" or onto is None:
        return None
    ours = get_schema(store, entry.schema)
    theirs = get_schema(store, onto.schema)
    if [(c.name, c.type) for c in ours.columns] != [(c.name, c.type) for c in theirs.columns]:
        return None  # read again with the table's new types (or fail with schema_mismatch)
    # the file's pieces, and whether each column may be null in the table: an
    # append built the table's pieces then the file's, and ORed their nullability
    pieces = get_manifest(store, entry.manifest).pieces
    known = [True] * len(ours.columns)  # our nullable flag is the file's own
    if base is not None:
        before = get_manifest(store, base.manifest).pieces
        if pieces[: len(before)] != before:
            return None
        pieces = pieces[len(before) :]
        known = [not c.nullable for c in get_schema(store, base.schema).columns]
    nullable = []
    for o, t, k in zip(ours.columns, theirs.columns, known, strict=True):
        if not t.nullable and not k:
            return None  # whether the file's rows hold nulls there is not recorded
        nullable.append(t.nullable or o.nullable)
    schema = Schema(
        tuple(Column(c.name, c.type, n) for c, n in zip(theirs.columns, nullable, strict=True))
    )
    manifest = Manifest(tuple(get_manifest(store, onto.manifest).pieces) + tuple(pieces))
    put_object(store, "schema", schema)
    put_object(store, "manifest", manifest)
    total = onto.row_count + result["rows"]
    rebased = TableEntry(schema=schema.id, manifest=manifest.id, row_count=total)
    return rebased, {**result, "table_rows": total}, dialect


def _tables_of(path: Path, params: dict[str, Any], work: Path) -> list[tuple[str, Path, Any, str]]:
    """(table name, file, source factory, format) for each table the upload
    holds: one, one per sheet of a workbook (the ``table`` field names it only
    when one sheet is imported), or one per member of an archive."""
    fmt = params["format"]
    if fmt == "archive":
        out = []
        members = extract(path, work, params.get("options") or {}, get_settings().max_upload_bytes)
        for member, member_path, member_fmt in members:
            stem = table_name_from_file(PurePosixPath(member).name)
            for name, p, source, f in _tables_of(
                member_path, {**params, "format": member_fmt, "table": stem}, work
            ):
                out.append((name, p, source, f))
        names = [t[0] for t in out]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ImportFailed(
                f"several members would become table {dup[0]!r}; choose with options.members",
                code="duplicate_table",
                table=dup[0],
            )
        return out
    if fmt == "parquet":
        return [(params["table"], path, ParquetSource, fmt)]
    if fmt != "excel":
        return [(params["table"], path, CsvSource, fmt)]
    check_expansion(path, min(get_settings().max_upload_bytes, EXCEL_MAX_EXPANDED_BYTES))
    sheets = sheet_names(path, params.get("options") or {})
    if not sheets:
        raise ImportFailed("the workbook has no sheets", code="empty_file")
    out = []
    for sheet in sheets:
        name = params["table"] if len(sheets) == 1 and params.get("table_given") else sheet
        out.append(
            (table_name_from_sheet(name), path, functools.partial(ExcelSource, sheet=sheet), fmt)
        )
    return out


def _import_table(
    store: Any,
    work: Path,
    params: dict[str, Any],
    progress: _Progress,
    path: Path,
    source: Any,
    current: TableEntry | None,
    *,
    lines_at: tuple[uuid.UUID, str, str] | None = None,
    indexes: dict[str, lines.LineIndex] | None = None,
) -> tuple[TableEntry, dict[str, Any], dict[str, Any]]:
    """Write one table of the file; returns its entry, result and dialect.

    A CSV that replaces a table whose line index is at ``lines_at`` (dataset,
    branch, table) is read by lines (``features.imports.lines``); the index
    of the table it makes goes into ``indexes``, to be saved once it lands."""
    mode = params["mode"]
    base = current if mode in ("append", "upsert") else None
    target = get_schema(store, base.schema) if base is not None else None
    previous = None
    if mode in ("replace", "upsert") and current is not None:
        previous = (get_schema(store, current.schema), get_manifest(store, current.manifest))
    key = params.get("primary_key") if mode == "upsert" else None
    if key is not None and target is not None:
        missing = [k for k in key if k not in target.names]
        if missing:
            raise ImportFailed(
                f"the primary key column(s) {', '.join(map(repr, missing))} are not in the table",
                code="schema_mismatch",
                missing=missing,
            )
    options = params.get("options") or {}
    by_lines = (
        lines_at is not None
        and indexes is not None
        and mode == "replace"
        and source is CsvSource
        and get_settings().line_index_max_rows > 0
    )
    index = lines.load(*lines_at, current) if by_lines and current and lines_at else None
    fast = (
        lines.reupload(path, work, params, store, previous, index, progress)
        if index and previous
        else None
    )
    if index is not None:
        log.info("re-upload by lines" if fast else "line index not usable: reading every row")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lines") as scanner:
        scanning = None
        if by_lines and fast is None:
            # the file's lines hashed while it is parsed, for the next upload
            with contextlib.suppress(ImportFailed):
                scanning = scanner.submit(
                    lines.scan_file,
                    path,
                    sniff(path, options, params["format"]),
                    work,
                    get_settings().line_index_max_rows,
                )
        if fast is not None:
            names, types, nullable, pieces, rows, dialect, new_index, fast_parsed = fast
        else:
            names, types, nullable, pieces, rows, dialect = _write_table_retrying(
                path, work, params, store, progress, target, previous, source, key
            )
        scan = scanning.result() if scanning is not None else None
    total = rows
    if mode == "upsert":
        total = sum(p.length for p in pieces)
        if target is not None:
            nullable = [c.nullable or n for c, n in zip(target.columns, nullable, strict=True)]
    elif base is not None and target is not None:
        # append: the table's rows as they are, then the file's
        nullable = [c.nullable or n for c, n in zip(target.columns, nullable, strict=True)]
        pieces = list(get_manifest(store, base.manifest).pieces) + pieces
        total += base.row_count
    elif previous is not None:
        # replace: a column that keeps its name and type keeps a nullable flag
        # (decision 0014), so re-uploads do not flip it back and forth
        before = {c.name: c for c in previous[0].columns}
        nullable = [
            n or (c is not None and c.type == t and c.nullable)
            for n, t, c in zip(nullable, types, (before.get(x) for x in names), strict=True)
        ]
    schema = Schema(
        tuple(Column(n, t, nl) for n, t, nl in zip(names, types, nullable, strict=True))
    )
    manifest = Manifest.of(pieces)
    put_object(store, "schema", schema)
    put_object(store, "manifest", manifest)
    entry = TableEntry(schema=schema.id, manifest=manifest.id, row_count=total)
    if indexes is not None and lines_at is not None:
        made = (
            new_index._replace(table=(schema.id, manifest.id))
            if fast is not None
            else lines.index_of(scan, dialect, options, rows, schema, manifest)
        )
        if made is not None:
            indexes[lines_at[2]] = made
    result: dict[str, Any] = {"rows": rows, "table_rows": total}
    if fast is not None:
        result["parsed_rows"] = fast_parsed  # the rest are lines the table already had
    return entry, result, dialect


def _write_table_retrying(
    path: Path,
    work: Path,
    params: dict[str, Any],
    store: Any,
    progress: _Progress,
    target: Schema | None,
    previous: tuple[Schema, Manifest] | None,
    source: Callable[..., TableSource],
    key: list[str] | None,
) -> tuple[list[str], list[str], list[bool], list[Piece], int, dict[str, Any]]:
    """``_write_table``, read again as Windows-1252 (then Latin-1) when a file
    that starts as UTF-8 turns out not to be."""
    try:
        return _write_table(path, work, params, store, progress, target, previous, source, key)
    except ImportFailed as err:
        options = params.get("options") or {}
        if err.code != "invalid_encoding" or options.get("encoding"):
            raise
        # valid UTF-8 at the start but not further on: a legacy Windows file
        log.info("not UTF-8 after all; reading as Windows-1252", line=err.extra.get("line"))
        for encoding in ("cp1252", "latin-1"):
            retry = {**params, "options": {**options, "encoding": encoding}}
            try:
                names, types, nullable, pieces, rows, dialect = _write_table(
                    path, work, retry, store, progress, target, previous, source, key
                )
                dialect["encoding_detected"] = True
                break
            except ImportFailed as again:
                if again.code not in ("invalid_encoding", "malformed_csv"):
                    raise
        else:
            raise
        return names, types, nullable, pieces, rows, dialect


@contextmanager
def _source_file(
    store: Any, job: dict[str, Any], work: Path, progress: _Progress
) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The file to import and what provenance records of it: the upload, or
    the download of a URL import."""
    params = job["params"]
    source = params.get("source")
    if source is None:
        upload = params["upload"]
        if not store.exists(upload["object_key"]):
            raise ImportFailed("the uploaded file is gone", code="upload_missing")
        info = {"file_name": upload["filename"], "size": upload["size"], "blake3": upload["blake3"]}
        with store.local_path(upload["object_key"]) as path:
            yield path, info
        return
    settings = get_settings()
    got = fetch(
        source["urls"],
        work / "download",
        max_bytes=settings.max_upload_bytes,
        checksum=source.get("checksum"),
        allow_private=settings.url_import_allow_private,
        timeout_s=settings.url_import_timeout_s,
        attempts=settings.url_import_attempts,
        on_bytes=lambda n: progress.update(bytes_read=n),
    )
    jobs_service.set_total_bytes(job["id"], got.size)
    info = {
        "file_name": got.filename,
        "size": got.size,
        "blake3": got.blake3,
        "sha256": got.sha256,
        "url": got.url,
    }
    yield got.path, info


def _write_table(
    path: Path,
    work: Path,
    params: dict[str, Any],
    store: Any,
    progress: _Progress,
    target: Schema | None = None,
    previous: tuple[Schema, Manifest] | None = None,
    source: Callable[..., TableSource] = CsvSource,
    key: list[str] | None = None,
) -> tuple[list[str], list[str], list[bool], list[Piece], int, dict[str, Any]]:
    """``_write_pass`` with the types a CSV re-upload keeps from the table it
    replaces (decision 0014): a column with a value that does not fit its old
    type is read again with its type inferred, as in a first import."""
    preferred: dict[str, str] = {}
    if previous is not None and target is None and source is CsvSource:
        preferred = {c.name: c.type for c in previous[0].columns}
    while True:
        try:
            return _write_pass(
                path, work, params, store, progress, target, previous, source, key, preferred
            )
        except PreferenceMissed as missed:
            log.info("a column no longer fits its type; reading again", column=missed.column)
            preferred = {n: t for n, t in preferred.items() if n != missed.column}


def _write_pass(
    path: Path,
    work: Path,
    params: dict[str, Any],
    store: Any,
    progress: _Progress,
    target: Schema | None,
    previous: tuple[Schema, Manifest] | None,
    source: Callable[..., TableSource],
    key: list[str] | None,
    preferred: dict[str, str],
) -> tuple[list[str], list[str], list[bool], list[Piece], int, dict[str, Any]]:
    """Parse, type, hash and store the file's rows; returns its names, types,
    nullability, manifest pieces, row count and dialect.

    With a ``target`` schema (appending to a table), the file must have exactly
    its columns, in any order; values are read as the target's types and the
    columns stored in the target's order, so equal rows hash equal.

    With the ``previous`` version of the table (replacing it), rows it already
    stored are matched and re-used rather than stored again (``dedup``), as
    long as the columns are the same.

    Types are speculated from the first batch and every batch is converted and
    chunked as it is read. When a later value widens a column's type the
    speculative chunks are dropped and a second pass re-reads the file with the
    final types, so the result never depends on the speculation.
    """
    fixed = {c.name: c.type for c in target.columns} if target else None
    order = target.names if target else None
    src = source(
        path,
        options=params.get("options") or {},
        fmt=params["format"],
        on_bytes=lambda n: progress.update(bytes_read=n),
        types=fixed,
        **({"preferred": preferred} if preferred else {}),
    )
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="chunk") as pool:

        def make_writer(columns: list[Column]) -> ChunkWriter | DedupWriter:
            if key is not None:
                return UpsertWriter(
                    store,
                    columns,
                    work,
                    pool,
                    previous[1] if previous is not None else Manifest(()),
                    get_settings().chunk_rows,
                    lambda: ChunkWriter(store, columns, work, pool),
                    key=key,
                )
            if previous is not None and [(c.name, c.type) for c in columns] == [
                (c.name, c.type) for c in previous[0].columns
            ]:
                return DedupWriter(
                    store,
                    columns,
                    work,
                    pool,
                    previous[1],
                    get_settings().chunk_rows,
                    lambda: ChunkWriter(store, columns, work, pool),
                )
            return ChunkWriter(store, columns, work, pool)

        writer: ChunkWriter | DedupWriter | None = None
        spec: list[str] | None = None
        try:
            for text, typed in src:
                types = src.types()
                if spec is None:
                    if target is not None:
                        _same_columns(src.names, target)
                    spec = types
                    writer = make_writer(columns_of(src.names, spec, order))
                progress.check()
                if writer is not None and types == spec:
                    writer.add(assemble(text, typed, spec, order))
                    progress.update(rows=writer.rows)
                elif writer is not None:
                    log.info("type speculation missed; the file is read twice", speculated=spec)
                    writer.abandon()
                    writer = None
        except PreferenceMissed:
            if writer is not None:
                writer.abandon()
            raise
        final = src.types()
        if writer is None or final != spec:
            if writer is not None:
                writer.abandon()
            writer = make_writer(columns_of(src.names, final, order))
            again = source(
                path,
                options=params.get("options") or {},
                fmt=params["format"],
                on_bytes=lambda n: None,
                types=dict(zip(src.names, final, strict=True)),
            )
            for text, typed in again:
                progress.check()
                writer.add(assemble(text, typed, final, order))
                progress.update(rows=writer.rows)
        pieces = writer.finish()
    if target is not None:
        _same_columns(src.names, target)  # also for a file with a header and no rows
    names, nullable = src.names, src.nullable()
    if order is not None:
        nullable = [nullable[names.index(n)] for n in order]
        final = [final[names.index(n)] for n in order]
        names = list(order)
    return names, final, nullable, pieces, src.rows, src.dialect


def _same_columns(names: list[str], target: Schema) -> None:
    missing = [n for n in target.names if n not in names]
    extra = [n for n in names if n not in target.names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(repr(n) for n in missing)}")
        if extra:
            parts.append(f"not in the table: {', '.join(repr(n) for n in extra)}")
        raise ImportFailed(
            "appending needs the table's columns: " + "; ".join(parts),
            code="schema_mismatch",
            missing=missing,
            extra=extra,
        )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dsa")
    except PackageNotFoundError:
        return "0+unknown"

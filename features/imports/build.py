"""Build: one table of the file as a new version of the table.

``build_table`` decides how the rows are read — by lines on the index of
the table a CSV replaces (``lines``, decision 0014) or in full
(``write.write_table``) — then applies the mode (replace, append, upsert)
to the rows written, and stores the table's schema and manifest. Nothing
here touches a ref: landing is ``land``'s.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import structlog

from core.config import get_settings
from core.objects import Manifest, Schema, TableEntry, get_manifest, get_schema, put_object
from core.schema import Column
from features.imports import lines, suggest
from features.imports.acquire import TableInput
from features.imports.context import BuildContext, WriteJob, Written
from features.imports.csv_reader import sniff
from features.imports.errors import ImportFailed
from features.imports.write import write_table

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TableBuild:
    """A table built by an import: its entry in the new commit, its part of
    the job's result, the dialect read (provenance), for a CSV that
    replaced a table the line index of the table it makes (saved once the
    version lands), and whether its rows were matched exhaustively against
    the version it replaced (``Written.disjoint``; decision 0041)."""

    entry: TableEntry
    result: dict[str, Any]
    dialect: dict[str, Any]
    index: lines.LineIndex | None = None
    disjoint: bool = False


def build_table(
    ctx: BuildContext,
    table: TableInput,
    current: TableEntry | None,
    *,
    lines_at: tuple[uuid.UUID, str] | None = None,
) -> TableBuild:
    """Build ``table`` on the branch's ``current`` version of it. With
    ``lines_at`` (dataset, branch), a CSV that replaces the table is read by
    lines when the branch's line index allows, and the new table's index is
    made."""
    job = _write_job(ctx, table, current)
    by_lines = (
        lines_at is not None
        and ctx.request.mode == "replace"
        and table.is_csv
        and not ctx.request.options.get("column_map")  # the index knows the file's names
        and get_settings().line_index_max_rows > 0
    )
    began = time.perf_counter()
    index = (
        lines.load(*lines_at, table.name, current, ctx.work)
        if by_lines and current and lines_at
        else None
    )
    load_s = round(time.perf_counter() - began, 3)
    try:
        fast = lines.reupload(ctx, job, index) if index and job.previous else None
    finally:
        if index is not None:
            index.hashes.path.unlink(missing_ok=True)  # 16 bytes a row of the job's disk
    if index is not None:
        if fast is not None:
            log.info("re-upload by lines", load_s=load_s, **fast.seconds)
        else:
            log.info("line index not usable: reading every row")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="lines") as scanner:
        scanning = _scan_lines(ctx, job, scanner) if by_lines and fast is None else None
        written = fast.written if fast is not None else write_table(ctx, job)
        scan = _scanned(scanning)
    schema, manifest, total = _store(ctx, job, current, written)
    entry = TableEntry(schema=schema.id, manifest=manifest.id, row_count=total)
    made = None
    if lines_at is not None:
        if fast is not None:
            made = fast.index._replace(table=(schema.id, manifest.id))
        else:
            made = lines.index_of(
                scan, written.dialect, ctx.request.options, written.rows, schema, manifest
            )
            if made is None and scan is not None:
                scan.hashes.path.unlink(missing_ok=True)
    result: dict[str, Any] = {"rows": written.rows, "table_rows": total}
    if fast is not None:
        result["parsed_rows"] = fast.parsed_rows  # the rest are lines the table already had
    if current is not None and current.schema != entry.schema:
        hints = _suggestions(ctx, current, entry)
        if hints:
            result["schema_suggestions"] = hints
    disjoint = written.disjoint and ctx.request.mode == "replace" and current is not None
    return TableBuild(entry, result, written.dialect, made, disjoint)


def _suggestions(ctx: BuildContext, before: TableEntry, after: TableEntry) -> list[dict[str, Any]]:
    """What the file's changed columns probably meant (``suggest``); a hint
    never fails an import."""
    try:
        return suggest.suggestions(ctx.store, before, after)
    except Exception:
        log.warning("could not suggest schema mappings", exc_info=True)
        return []


def _write_job(ctx: BuildContext, table: TableInput, current: TableEntry | None) -> WriteJob:
    """What to read the file against: the table's schema when appending, its
    version when replacing or upserting, and the key of an upsert."""
    mode, store = ctx.request.mode, ctx.store
    base = current if mode in ("append", "upsert") else None
    target = get_schema(store, base.schema) if base is not None else None
    previous = None
    if mode in ("replace", "upsert") and current is not None:
        previous = (get_schema(store, current.schema), get_manifest(store, current.manifest))
    key = ctx.request.primary_key if mode == "upsert" else None
    if key is not None and target is not None:
        missing = [k for k in key if k not in target.names]
        if missing:
            raise ImportFailed(
                f"the primary key column(s) {', '.join(map(repr, missing))} are not in the table",
                code="schema_mismatch",
                missing=missing,
            )
    return WriteJob(table, ctx.request.options, target, previous, key)


def _scan_lines(
    ctx: BuildContext, job: WriteJob, scanner: ThreadPoolExecutor
) -> Future[lines.Scan | None] | None:
    """The file's lines hashed while it is parsed, for the next upload."""
    with contextlib.suppress(ImportFailed):
        dialect = sniff(job.table.path, job.options, job.table.format)
        return scanner.submit(
            lines.scan_file,
            job.table.path,
            dialect,
            ctx.work,
            get_settings().line_index_max_rows,
        )
    return None


def _scanned(scanning: Future[lines.Scan | None] | None) -> lines.Scan | None:
    """The scan of the file's lines, if it ran: the next upload's shortcut,
    so a scan that failed (memory, disk) costs that upload speed, not this
    import."""
    if scanning is None:
        return None
    try:
        return scanning.result()
    except Exception:
        log.warning("could not index the file's lines", exc_info=True)
        return None


def _store(
    ctx: BuildContext, job: WriteJob, current: TableEntry | None, written: Written
) -> tuple[Schema, Manifest, int]:
    """The table's schema and manifest stored for the mode: an upsert's rows
    are the merged table, an append follows the table's rows, a replace
    keeps nullable flags (decision 0014); and its row count."""
    mode = ctx.request.mode
    names, types, nullable = written.names, written.types, written.nullable
    pieces = written.pieces
    total = written.rows
    target, previous = job.target, job.previous
    if mode == "upsert":
        total = sum(p.length for p in pieces)
        if target is not None:
            nullable = [c.nullable or n for c, n in zip(target.columns, nullable, strict=True)]
    elif mode == "append" and current is not None and target is not None:
        # append: the table's rows as they are, then the file's
        nullable = [c.nullable or n for c, n in zip(target.columns, nullable, strict=True)]
        pieces = list(get_manifest(ctx.store, current.manifest).pieces) + list(pieces)
        total += current.row_count
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
    put_object(ctx.store, "schema", schema)
    put_object(ctx.store, "manifest", manifest)
    return schema, manifest, total

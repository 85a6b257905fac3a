"""Build, the full read: parse, type, hash and store a table's rows.

``write_table`` reads the file with its reader and writes its rows as chunks
(``chunking``), re-using the rows the replaced version already stored
(``dedup``). Types are speculated from the first batch and every batch is
converted and chunked as it is read; when a later value widens a column's
type, the speculative chunks are dropped and a second pass reads the file
with the final types, so the result never depends on the speculation.

Two retries wrap the pass: a CSV re-upload first keeps the types the table
had (decision 0014) and drops that preference for a column whose value no
longer fits; a file that starts as UTF-8 but is not is read again as
Windows-1252, then Latin-1.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import pyarrow as pa
import structlog

from core.config import get_settings
from core.objects import Manifest, Schema
from core.schema import Column
from features.imports.chunking import ChunkWriter, assemble, columns_of
from features.imports.context import BuildContext, WriteJob, Written
from features.imports.dedup import DedupWriter, UpsertWriter
from features.imports.errors import (
    ImportFailed,
    InvalidEncoding,
    MalformedCsv,
    PreferenceMissed,
)
from features.imports.source import TableSource

log = structlog.get_logger(__name__)
Writer = ChunkWriter | DedupWriter


def write_table(ctx: BuildContext, job: WriteJob) -> Written:
    """The table's rows written; read again as Windows-1252 (then Latin-1)
    when a file that starts as UTF-8 turns out not to be."""
    try:
        return _write_preferring(ctx, job)
    except InvalidEncoding as err:
        if job.options.get("encoding"):
            raise
        # valid UTF-8 at the start but not further on: a legacy Windows file
        log.info("not UTF-8 after all; reading as Windows-1252", line=err.extra.get("line"))
        for encoding in ("cp1252", "latin-1"):
            retry = WriteJob(
                job.table, {**job.options, "encoding": encoding}, job.target, job.previous, job.key
            )
            try:
                written = _write_preferring(ctx, retry)
            except (InvalidEncoding, MalformedCsv):
                continue
            written.dialect["encoding_detected"] = True
            return written
        raise


def _write_preferring(ctx: BuildContext, job: WriteJob) -> Written:
    """``_write_pass`` with the types a CSV re-upload keeps from the table it
    replaces (decision 0014): a column with a value that does not fit its old
    type is read again with its type inferred, as in a first import."""
    preferred: dict[str, str] = {}
    if job.previous is not None and job.target is None and job.table.is_csv:
        preferred = {c.name: c.type for c in job.previous[0].columns}
    while True:
        try:
            return _write_pass(ctx, job, preferred)
        except PreferenceMissed as missed:
            log.info("a column no longer fits its type; reading again", column=missed.column)
            preferred = {n: t for n, t in preferred.items() if n != missed.column}


def _open(ctx: BuildContext, job: WriteJob, **kw: Any) -> TableSource:
    """The file's reader; with ``options.column_map``, its columns renamed
    (the types asked for by table name are passed on by file name)."""
    cmap: dict[str, str] = job.options.get("column_map") or {}
    if cmap:
        back = {to: frm for frm, to in cmap.items()}
        for k in ("types", "preferred"):
            if kw.get(k):
                kw[k] = {back.get(n, n): t for n, t in kw[k].items()}
    src = job.table.reader(job.table.path, options=job.options, fmt=job.table.format, **kw)
    return cast(TableSource, Renamed(src, cmap)) if cmap else src


class Renamed:
    """A reader whose columns ``column_map`` renames (file name → table name)."""

    def __init__(self, src: TableSource, cmap: dict[str, str]) -> None:
        self._src, self._map = src, cmap

    @property
    def names(self) -> list[str]:
        names = [self._map.get(n, n) for n in self._src.names]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ImportFailed(
                f"column_map makes two columns named {dup[0]!r}",
                code="duplicate_column_name",
                column_name=dup[0],
            )
        return names

    @property
    def rows(self) -> int:
        return self._src.rows

    @property
    def dialect(self) -> dict[str, Any]:
        return {**self._src.dialect, "column_map": self._map}

    def types(self) -> list[str]:
        return self._src.types()

    def nullable(self) -> list[bool]:
        return self._src.nullable()

    def __iter__(self) -> Iterator[tuple[pa.RecordBatch, list[pa.Array | None]]]:
        return iter(self._src)


def _write_pass(ctx: BuildContext, job: WriteJob, preferred: dict[str, str]) -> Written:
    """One or two reads of the file (see the module docstring).

    With a ``target`` schema (appending to a table), the file must have
    exactly its columns, in any order; values are read as the target's
    types and the columns stored in the target's order, so equal rows hash
    equal."""
    target = job.target
    order = target.names if target else None
    src = _open(
        ctx,
        job,
        on_bytes=lambda n: ctx.progress.update(bytes_read=n),
        types={c.name: c.type for c in target.columns} if target else None,
        **({"preferred": preferred} if preferred else {}),
    )
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="chunk") as pool:

        def make_writer(types: list[str]) -> Writer:
            return _writer(ctx, job, columns_of(src.names, types, order), pool)

        writer, spec = _speculative_pass(ctx, job, src, make_writer)
        final = src.types()
        if writer is None or final != spec:
            if writer is not None:
                writer.abandon()
            writer = make_writer(final)
            again = _open(
                ctx, job, on_bytes=lambda n: None, types=dict(zip(src.names, final, strict=True))
            )
            for text, typed in again:
                ctx.progress.check()
                writer.add(assemble(text, typed, final, order))
                ctx.progress.update(rows=writer.rows)
        pieces = writer.finish()
    if target is not None:
        _same_columns(src.names, target)  # also for a file with a header and no rows
    names, nullable = src.names, src.nullable()
    if order is not None:
        nullable = [nullable[names.index(n)] for n in order]
        final = [final[names.index(n)] for n in order]
        names = list(order)
    disjoint = type(writer) is DedupWriter and writer.exhaustive  # not an upsert's
    return Written(names, final, nullable, pieces, src.rows, src.dialect, disjoint)


def _speculative_pass(
    ctx: BuildContext, job: WriteJob, src: TableSource, make_writer: Any
) -> tuple[Writer | None, list[str] | None]:
    """Read the file once, writing its rows with the types of its first
    batch; the writer is None when a later batch widened a type (its chunks
    were dropped), and the types it wrote with."""
    order = job.target.names if job.target else None
    writer: Writer | None = None
    spec: list[str] | None = None
    try:
        for text, typed in src:
            types = src.types()
            if spec is None:
                if job.target is not None:
                    _same_columns(src.names, job.target)
                spec = types
                writer = make_writer(spec)
            ctx.progress.check()
            if writer is not None and types == spec:
                writer.add(assemble(text, typed, spec, order))
                ctx.progress.update(rows=writer.rows)
            elif writer is not None:
                log.info("type speculation missed; the file is read twice", speculated=spec)
                writer.abandon()
                writer = None
    except PreferenceMissed:
        if writer is not None:
            writer.abandon()
        raise
    return writer, spec


def _writer(
    ctx: BuildContext, job: WriteJob, columns: list[Column], pool: ThreadPoolExecutor
) -> Writer:
    """Chunks for the rows: re-using the previous version's stored rows where
    the columns are the same (``DedupWriter``), merging by key for an upsert."""
    store, work, previous = ctx.store, ctx.work, job.previous
    chunk_rows = get_settings().chunk_rows

    def fresh() -> ChunkWriter:
        return ChunkWriter(store, columns, work, pool)

    if job.key is not None:
        before = previous[1] if previous is not None else Manifest(())
        return UpsertWriter(store, columns, work, pool, before, chunk_rows, fresh, key=job.key)
    if previous is not None and [(c.name, c.type) for c in columns] == [
        (c.name, c.type) for c in previous[0].columns
    ]:
        return DedupWriter(store, columns, work, pool, previous[1], chunk_rows, fresh)
    return fresh()


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

"""Acquire: the file an import reads, and the tables it holds.

The file is the stored upload or the download of a URL import
(``source_file``); a file holds one table, one per sheet of a workbook, or
one per member of an archive (``tables_of``), each read by its format's
reader (the read stage: ``csv_reader``, ``excel_reader``, ``parquet_reader``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from core.config import get_settings
from core.storage import ObjectStore, fetched
from features.imports.archives import extract
from features.imports.csv_reader import CsvSource
from features.imports.errors import ImportFailed
from features.imports.excel_reader import ExcelSource, check_expansion, sheet_names
from features.imports.fetch import Fetched, NotModified, fetch, filename_of, redact, url_digest
from features.imports.formats import table_name_from_file, table_name_from_sheet
from features.imports.models import ImportRequest, UrlSource
from features.imports.parquet_reader import ParquetSource
from features.imports.progress import Progress
from features.imports.source import TableSource

# calamine holds a whole sheet in memory: workbooks expanding past this are refused
EXCEL_MAX_EXPANDED_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class TableInput:
    """One table of the file: its name, the file it is in (an archive's
    member is extracted), the reader that reads it, and its format."""

    name: str
    path: Path
    reader: Callable[..., TableSource]
    format: str

    @property
    def is_csv(self) -> bool:
        return self.reader is CsvSource


@contextmanager
def source_file(
    store: ObjectStore, request: ImportRequest, work: Path, progress: Progress
) -> Iterator[tuple[Path | None, dict[str, Any]]]:
    """The file to import and what provenance records of it: the upload, or
    the download of a URL import; None when a schedule's conditional
    request found the file unchanged (``not_modified``)."""
    if request.source is None:
        upload = request.upload
        if upload is None or not store.exists(upload.object_key):
            raise ImportFailed("the uploaded file is gone", code="upload_missing")
        info = {"file_name": upload.filename, "size": upload.size, "blake3": upload.blake3}
        with fetched(store, upload.object_key, max_bytes=upload.size, work=work) as path:
            yield path, info
        return
    src = request.source
    try:
        got = _fetch(src, work, progress)
    except NotModified as same:  # the file fetched last time: nothing to read
        info = {"file_name": filename_of(same.url), "size": 0, "url": redact(same.url)}
        info.update(url_digest=url_digest(same.url), not_modified=True)
        yield None, {**info, **_validators(src.schedule_id, src.etag, src.last_modified)}
        return
    progress.total_bytes(got.size)
    info = {
        "file_name": got.filename,
        "size": got.size,
        "blake3": got.blake3,
        "sha256": got.sha256,
        "url": redact(got.url),
        "url_digest": url_digest(got.url),
        **_validators(src.schedule_id, got.etag, got.last_modified),
    }
    yield got.path, info


def _validators(schedule_id: str | None, etag: str | None, modified: str | None) -> dict[str, Any]:
    """A schedule's run's provenance: the schedule, and the validators the
    next run asks with (none for other URL imports: their commits stay as
    they were)."""
    if schedule_id is None:
        return {}
    return {"schedule_id": schedule_id, "etag": etag, "last_modified": modified}


def _fetch(src: UrlSource, work: Path, progress: Progress) -> Fetched:
    settings = get_settings()
    return fetch(
        src.urls,
        work / "download",
        max_bytes=settings.max_upload_bytes,
        checksum=src.checksum,
        allow_private=settings.url_import_allow_private,
        timeout_s=settings.url_import_timeout_s,
        attempts=settings.url_import_attempts,
        on_bytes=lambda n: progress.update(bytes_read=n),
        max_seconds=settings.url_import_max_seconds,
        conditional=src.conditional(),
    )


def tables_of(path: Path, request: ImportRequest, work: Path) -> list[TableInput]:
    """Each table the file holds: one, one per sheet of a workbook (the
    ``table`` field names it only when one sheet is imported), or one per
    member of an archive."""
    fmt = request.format
    if fmt == "archive":
        return _archive_tables(path, request, work)
    if fmt == "parquet":
        return [TableInput(request.table, path, ParquetSource, fmt)]
    if fmt != "excel":
        return [TableInput(request.table, path, CsvSource, fmt)]
    s = get_settings()
    check_expansion(
        path, min(s.max_upload_bytes, s.max_decompressed_bytes, EXCEL_MAX_EXPANDED_BYTES)
    )
    sheets = sheet_names(path, request.options)
    if not sheets:
        raise ImportFailed("the workbook has no sheets", code="empty_file")
    out = []
    for sheet in sheets:
        name = request.table if len(sheets) == 1 and request.table_given else sheet
        reader = functools.partial(ExcelSource, sheet=sheet)
        out.append(TableInput(table_name_from_sheet(name), path, reader, fmt))
    return out


def _archive_tables(path: Path, request: ImportRequest, work: Path) -> list[TableInput]:
    out: list[TableInput] = []
    members = extract(path, work, request.options, get_settings().max_upload_bytes)
    for member, member_path, member_fmt in members:
        stem = table_name_from_file(PurePosixPath(member).name)
        inner = request.model_copy(update={"format": member_fmt, "table": stem})
        out.extend(tables_of(member_path, inner, work))
    names = [t.name for t in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ImportFailed(
            f"several members would become table {dup[0]!r}; choose with options.members",
            code="duplicate_table",
            table=dup[0],
        )
    return out

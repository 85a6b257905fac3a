"""Re-uploads that parse only the lines that changed (decision 0014).

A CSV re-upload of a big table usually repeats most of its lines byte for
byte. Parsing, typing and hashing every row again costs ~2 CPU-seconds per
million rows; finding and hashing every *line* costs ~0.1 s
(``_records.split_hash``). So a CSV import that replaces a table keeps a
**line index** next to the branch: the hash of each data line, in row order,
with what the lines were read under (delimiter, encoding, header line, null
values, column types). The next upload of the table on that branch:

1. finds and hashes its own lines, and checks the header and the dialect;
2. pairs its lines with the index's (the k-th copy of a line with the k-th
   copy, as ``dedup.match`` pairs rows): a paired line *is* the stored row at
   that position, since the same bytes read under the same dialect and types
   give the same values;
3. parses only the unpaired lines, as the table's types (decision 0014: a
   re-upload keeps the table's types when its values fit them), and stores
   them in new chunks;
4. builds the manifest from the pairs exactly as ``dedup`` does.

Anything unusual falls back to the full import, which gives the same table:
no index (first upload on the branch, another worker's disk, a table over
``DSA_LINE_INDEX_MAX_ROWS``), another dialect or header, compressed input
(decompressed to the job's work directory first, so not a fallback), a file
where fewer than half the lines pair (a re-export with other quoting or
number formats: the full import still pairs those rows by row hash), a line
whose value no longer fits its column's type, any parse error (the full
import reports it with its place), or a manifest too fragmented to keep.

The index is a cache beside the versioned objects: one object per
(dataset, branch, table) under ``lines/`` in the object store, 16 bytes a
row, replaced by each import that lands there, so any worker of any node
takes the fast path. Losing it only costs speed.

Memory stays bounded whatever the file's length (issue 19): the scan writes
its hashes and the lines' places to files in the job's work directory, the
index is streamed to another (``line_index.Records``), and past
``matching.EXTERNAL_ROWS`` the pairing compares the lines in place first
(``aligned``, decision 0042), else runs on disk.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
import pyarrow as pa
import structlog

from core.config import get_settings
from core.objects import Manifest, Schema
from core.storage import ObjectStore
from features.imports import _records, aligned  # type: ignore[attr-defined]  # _records: C
from features.imports.chunking import ChunkWriter, assemble, columns_of
from features.imports.compression import open_decoded
from features.imports.context import BuildContext, WriteJob, Written
from features.imports.csv_reader import WHITESPACE, CsvSource, detect_header, sniff
from features.imports.dedup import (
    COMPACT_MIN_PIECES,
    COMPACT_MIN_RUN,
    _halves,
    _pieces,
    place,
    positions,
    too_fragmented,
)
from features.imports.disjoint import fresh_rows_are_new
from features.imports.errors import ImportFailed
from features.imports.line_index import (  # noqa: F401 - the index's API, used as lines.*
    BLOCK,
    MAGIC,
    LineIndex,
    Records,
    RecordWriter,
    index_key,
    line_secret,
    load,
    save,
    work_file,
)
from features.imports.matching import EXTERNAL_ROWS, SLICE_ROWS, Pairing, match, table_slices

log = structlog.get_logger(__name__)
# encodings in which '\n', '\r', '"' and ASCII delimiters are single bytes
# that never occur inside another character
SINGLE_BYTE_SAFE = {"utf-8", "utf8", "ascii", "cp1252", "windows-1252", "latin-1", "iso-8859-1"}
# below this share of paired lines, the full import (pairing by row hash) runs
MIN_PAIRED = 0.5
SCAN_WINDOW = 64 * 1024 * 1024
BOM = b"\xef\xbb\xbf"


class Scan(NamedTuple):
    buf: Any  # the file's plain bytes, by slice (``_Lines``)
    header: bytes | None  # the hash of the header line
    hashes: Records  # 16 bytes a data line, in a file of the work dir
    spans: Records | None  # (start, end) of each data line in buf, when kept
    header_span: tuple[int, int] | None

    @property
    def rows(self) -> int:
        return self.hashes.count


def fingerprint(dialect: dict[str, Any], options: dict[str, Any], header: bytes | None) -> Any:
    """What the lines were read under, or None when the dialect has no index."""
    delimiter = dialect["delimiter"]
    if (
        dialect["format"] not in ("csv", "tsv")
        or delimiter == WHITESPACE
        or len(delimiter) != 1
        or not delimiter.isascii()
        or delimiter in '"\r\n'
        or dialect["encoding"].lower() not in SINGLE_BYTE_SAFE
        or dialect["skip_rows"]
        or dialect["header"] is None
    ):
        return None
    return {
        "delimiter": delimiter,
        "encoding": dialect["encoding"].lower(),
        "header": bool(dialect["header"]),
        "header_line": header.hex() if header else None,
        "null_values": list(dialect["null_values"]),
        "column_types": options.get("column_types") or {},
    }


@contextmanager
def scanned(
    path: Path, dialect: dict[str, Any], work: Path, max_rows: int, *, spans: bool = True
) -> Iterator[Scan | None]:
    """The file's lines found and hashed; None when the file has more than
    ``max_rows`` of them, is empty, or cannot be decompressed (the full import
    then says why)."""
    plain = path
    if dialect["compression"] is not None:
        plain = work / "lines-plain"
        stream, _ = open_decoded(path, dialect["compression"])
        try:
            with stream, open(plain, "wb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)
        except Exception:  # noqa: BLE001 - corrupt input: the full import reports it
            plain.unlink(missing_ok=True)
            yield None
            return
    try:
        size = plain.stat().st_size
        if size == 0:
            yield None
            return
        with open(plain, "rb") as f:
            scan = _scan(f.fileno(), size, dialect, max_rows, work, spans=spans)
            try:
                yield scan
            finally:
                if scan is not None and scan.spans is not None:
                    scan.spans.path.unlink(missing_ok=True)
    finally:
        if plain is not path:
            plain.unlink(missing_ok=True)


class _Lines:
    """The file's bytes by slice (``Scan.buf``): the changed lines read where
    they are, the file never mapped whole."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __getitem__(self, at: slice) -> bytes:
        return os.pread(self.fd, at.stop - at.start, at.start)


def _scan(
    fd: int, size: int, dialect: dict[str, Any], max_rows: int, work: Path, *, spans: bool = True
) -> Scan | None:
    """Every line of the file, the header (if any) among them. The file is
    mapped a window at a time (a whole 14 GB file would need that much
    address space, past the import's limit, and count in its resident
    memory as it is read); hashes and places go to files in ``work``."""
    pos = len(BOM) if os.pread(fd, len(BOM), 0) == BOM else 0
    hashes = RecordWriter(work_file(work, "hashes"))
    places: RecordWriter | None = None
    window, secret, done = SCAN_WINDOW, line_secret(), False
    try:
        places = RecordWriter(work_file(work, "spans")) if spans else None
        while pos < size:
            stop = min(size, pos + window)
            base = pos - pos % mmap.ALLOCATIONGRANULARITY
            with mmap.mmap(fd, stop - base, offset=base, access=mmap.ACCESS_READ) as buf:
                h, s, nxt = _records.split_hash(
                    buf, pos - base, stop - base, stop == size, dialect["delimiter"], secret=secret
                )
            if not h and stop < size:
                window *= 2  # one line longer than the window
                continue
            hashes.add(h)
            if places is not None:
                places.add(np.frombuffer(s, dtype="<i8") + base)
            nxt += base
            # past the limit, or sure to get there (from the lines so far): stop
            # before writing 32 bytes a line of a file far too long to index
            if hashes.count > max_rows + 1 or hashes.count * size > 2 * max_rows * nxt:
                return None
            pos = nxt
        done = True
    finally:
        found = hashes.close()
        where = places.close() if places is not None else None
        if not done:
            for records in (found, where):
                if records is not None:
                    records.path.unlink(missing_ok=True)
    return Scan(_Lines(fd), None, found, where, None)


def with_header(scan: Scan | None, header: bool) -> Scan | None:
    """The scan with its first line taken as the header when there is one."""
    if scan is None or not header:
        return scan
    if not scan.rows:
        return None
    spans, first = scan.spans, None
    if spans is not None:
        start, end = spans.words(0, 1, "<i8")[0].tolist()
        spans, first = spans.after(1), (start, end)
    return Scan(scan.buf, scan.hashes.read(0, 1), scan.hashes.after(1), spans, first)


def scan_file(path: Path, dialect: dict[str, Any], work: Path, max_rows: int) -> Scan | None:
    """``scanned`` for the hashes only (the file is closed again, its lines'
    places not kept; the hashes' file stays in ``work``)."""
    with scanned(path, dialect, work, max_rows, spans=False) as scan:
        return scan._replace(buf=None) if scan is not None else None


def index_of(
    scan: Scan | None,
    dialect: dict[str, Any],
    options: dict[str, Any],
    rows: int,
    schema: Schema,
    manifest: Manifest,
) -> LineIndex | None:
    """The index of a table a full import just read from the scanned file, when
    the scan found as many lines as the import found rows."""
    if scan is None:
        return None
    scan = with_header(scan, bool(dialect["header"]))
    if scan is None or scan.rows != rows:
        return None
    fp = fingerprint(dialect, options, scan.header)
    if fp is None:
        return None
    return LineIndex((schema.id, manifest.id), fp, scan.hashes)


@dataclass(frozen=True)
class Reuploaded:
    """A table built by lines: what was written, the new table's index
    (``table`` filled in once its manifest is known), the lines parsed and
    the seconds each step took (logged)."""

    written: Written
    index: LineIndex
    parsed_rows: int
    seconds: dict[str, float]


def reupload(ctx: BuildContext, job: WriteJob, index: LineIndex) -> Reuploaded | None:
    """The table ``job`` reads built on the index of the table it replaces
    (``job.previous``; see the module docstring), like ``write.write_table``;
    None when only the full import can tell."""
    path, fmt = job.table.path, job.table.format
    assert job.previous is not None
    try:
        dialect = sniff(path, job.options, fmt)
    except ImportFailed:
        return None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="header") as ex:
        detecting = None
        if dialect["header"] is None:
            # decided from the first block as an import decides it, while the
            # lines are matched on the header the index had
            detecting = ex.submit(detect_header, path, job.options, fmt)
            dialect["header"] = index.fingerprint["header"]
        try:
            built = _reupload(ctx, path, job.previous, index, job.options, dialect)
        except (OSError, MemoryError):  # the shortcut could not run: read every row
            log.warning("re-upload by lines failed; reading every row", exc_info=True)
            return None
        if detecting is not None and built is not None and not _same_header(detecting, dialect):
            built.index.hashes.path.unlink(missing_ok=True)
            return None
    return built


def _same_header(detecting: Any, dialect: dict[str, Any]) -> bool:
    try:
        return bool(detecting.result() == dialect["header"])
    except ImportFailed:
        return False


def _reupload(
    ctx: BuildContext,
    path: Path,
    previous: tuple[Schema, Manifest],
    index: LineIndex,
    options: dict[str, Any],
    dialect: dict[str, Any],
) -> Reuploaded | None:
    began = time.perf_counter()
    with scanned(path, dialect, ctx.work, get_settings().line_index_max_rows) as lines:
        built = None
        try:
            seconds = {"scan_s": round(time.perf_counter() - began, 3)}
            built = _by_lines(ctx, path, previous, index, options, dialect, lines, seconds)
        finally:
            if built is None and lines is not None:
                lines.hashes.path.unlink(missing_ok=True)  # 16 bytes a line of the disk
        return built


def _by_lines(
    ctx: BuildContext,
    path: Path,
    previous: tuple[Schema, Manifest],
    index: LineIndex,
    options: dict[str, Any],
    dialect: dict[str, Any],
    lines: Scan | None,
    seconds: dict[str, float],
) -> Reuploaded | None:
    settings = get_settings()
    progress = ctx.progress
    scan = with_header(lines, bool(dialect["header"]))
    if scan is None or not scan.rows:
        return None
    progress.check()  # a cancel stops here; the scan is the longest step
    progress.update(bytes_read=path.stat().st_size)
    if fingerprint(dialect, options, scan.header) != index.fingerprint:
        return None
    schema, manifest = previous
    rows = scan.rows
    chunks = list(manifest.columns.chunks)
    began = time.perf_counter()
    placed = _place(scan.hashes, index.hashes, manifest, settings.chunk_rows, ctx.work)
    seconds["match_s"] = round(time.perf_counter() - began, 3)
    if placed is None:  # too fragmented to keep
        return None
    unpaired, runs = placed
    if unpaired.sum() > rows * (1 - MIN_PAIRED):
        return None
    changed = unpaired.arg_true().to_numpy()
    progress.update(rows=rows - len(changed))
    progress.check()
    types = [c.type for c in schema.columns]
    nullable = [c.nullable for c in schema.columns]
    new_chunks: list[str] = []
    began = time.perf_counter()
    if len(changed):
        parsed = _parse_changed(scan, changed, dialect, ctx.work, ctx.store, schema)
        if parsed is None:
            return None
        new_chunks, file_nullable = parsed
        nullable = [a or b for a, b in zip(nullable, file_nullable, strict=True)]
    pieces = _pieces(chunks + new_chunks, runs)
    seconds["parse_s"] = round(time.perf_counter() - began, 3)
    progress.check()
    began = time.perf_counter()
    apart = fresh_rows_are_new(ctx.store, manifest, runs, new_chunks, len(changed))
    seconds["check_s"] = round(time.perf_counter() - began, 3)
    written = Written(list(schema.names), types, nullable, pieces, rows, dialect, apart)
    new_index = LineIndex(("", ""), index.fingerprint, scan.hashes)
    return Reuploaded(written, new_index, len(changed), seconds)


def _place(
    new: Records, old: Records, manifest: Manifest, chunk_rows: int, work: Path
) -> tuple[pl.Series, pl.DataFrame] | None:
    """The file's lines (``new`` hashes) paired with the table's (``old``,
    a hash a row of ``manifest``) and placed, as ``dedup`` places rows: in
    memory, or past ``EXTERNAL_ROWS`` in place (``aligned``) or else on
    disk (``matching``); None when the version would be too fragmented."""
    rows, max_runs = new.count, max(COMPACT_MIN_PIECES, new.count // COMPACT_MIN_RUN)
    if max(rows, manifest.row_count) <= EXTERNAL_ROWS:
        chunks, at = positions(manifest)
        before = pl.concat([_halves(pa.py_buffer(old.all()), 0, len(at)), at], how="horizontal")
        unpaired, runs = place(
            match(_halves(pa.py_buffer(new.all()), 0, rows), before), len(chunks), chunk_rows
        )
        return None if too_fragmented(runs.height, rows) else (unpaired, runs)
    with contextlib.suppress(aligned.Misaligned):  # most lines stand where they were
        return aligned.place(new, old, manifest, chunk_rows, max_runs, EXTERNAL_ROWS)
    pairing = Pairing(work, "lines")

    def spill_old() -> None:
        for first, chunk, pos in table_slices(manifest):
            h = old.words(first, first + len(chunk))
            pairing.add_old(h[:, 0], h[:, 1], chunk, pos)

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="spill") as ex:
            spilling = ex.submit(spill_old)  # the sides' buckets are apart: both at once
            for lo in range(0, rows, SLICE_ROWS):
                h = new.words(lo, lo + SLICE_ROWS)
                pairing.add_new(h[:, 0], h[:, 1])
            spilling.result()
        return pairing.place(len(manifest.columns.chunks), chunk_rows, max_runs)
    finally:
        pairing.close()


def _places(spans: Records, changed: np.ndarray) -> Iterator[tuple[int, int]]:
    """The (start, end) of each ``changed`` line (ascending), read from the
    spans' file a block at a time, only the stretch each block needs."""
    step = BLOCK // 16
    block = changed // step
    cuts = np.flatnonzero(np.diff(block)) + 1
    for part in np.split(changed, cuts):
        if len(part):
            lo = int(part[0])
            words = spans.words(lo, int(part[-1]) + 1, "<i8")
            yield from words[part - lo].tolist()


def _parse_changed(
    scan: Scan,
    changed: np.ndarray,
    dialect: dict[str, Any],
    work: Path,
    store: ObjectStore,
    schema: Schema,
) -> tuple[list[str], list[bool]] | None:
    """The unpaired lines parsed as the table's types and stored in new chunks
    (their ids in order, and which columns got a null); None when they do not
    parse or fit."""
    mini = work / "lines-changed.csv"
    buf = scan.buf
    with open(mini, "wb") as f:
        if scan.header_span is not None:
            f.write(buf[scan.header_span[0] : scan.header_span[1]] + b"\n")
        assert scan.spans is not None
        for start, end in _places(scan.spans, changed):
            f.write(buf[start:end])
            f.write(b"\n")
    options = {
        "delimiter": dialect["delimiter"],
        "header": bool(dialect["header"]),
        "encoding": dialect["encoding"],
        "null_values": dialect["null_values"],
    }
    types = {c.name: c.type for c in schema.columns}
    src = CsvSource(
        mini, options=options, fmt=dialect["format"], on_bytes=lambda n: None, types=types
    )
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="chunk") as pool:
        writer = ChunkWriter(store, columns_of(schema.names, list(types.values())), work, pool)
        try:
            for text, typed in src:
                writer.add(assemble(text, typed, list(types.values())))
            if src.names != list(schema.names) or src.rows != len(changed):
                raise ImportFailed("the changed lines read otherwise")
        except ImportFailed:
            writer.abandon()
            return None
        finally:
            mini.unlink(missing_ok=True)
        ids = [p.chunk for p in writer.finish()]
    return ids, src.nullable()

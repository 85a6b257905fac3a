"""CSV problems explained: where in the file (line, column) and why.

Arrow's fast reader says little about a bad file; on the failure path only,
these functions find the place with Python's csv module or a scan of the
bytes, so the job's problem document can say "line 1,234, column price".
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from features.imports.compression import decode_errors, open_decoded
from features.imports.csv_dialect import WHITESPACE, _RawAdapter, open_table_bytes
from features.imports.csv_types import fits
from features.imports.errors import ImportFailed, InvalidEncoding, MalformedCsv

# Arrow reads CSV in blocks (csv_reader.BLOCK_BYTES) and refuses a field that
# straddles more than two; fields up to one block are always read
MAX_FIELD_BYTES = 4 * 1024 * 1024
# Wider tables are refused: every row's encoding and every chunk's metadata grow
# with the column count, and no real dataset of this kind needs more.
MAX_COLUMNS = 10_000


def check_forced_columns(forced: dict[str, str], names: list[str], **where: Any) -> None:
    """Every column ``options.column_types`` names must exist."""
    for col in forced:
        if col not in names:
            raise ImportFailed(
                f"options.column_types names column {col!r}, which the table does not have",
                code="unknown_column",
                column=col,
                **where,
            )


def check_width(ncols: int, **where: Any) -> None:
    if ncols > MAX_COLUMNS:
        raise ImportFailed(
            f"the table has {ncols} columns; DSA takes at most {MAX_COLUMNS}",
            code="too_many_columns",
            columns=ncols,
            **where,
        )


def _long_field(path: Path, dialect: dict[str, Any], limit: int) -> tuple[int, int] | None:
    """(line where it starts, its length as far as read) of the first field longer
    than ``limit`` bytes, by a vectorised scan of the bytes: separators
    (the delimiter, newlines) count only outside quotes (``""`` toggles
    twice). Failure path only."""
    aligned = dialect["delimiter"] == WHITESPACE
    delim = ord("\t" if aligned else dialect["delimiter"])
    quote, newline = ord('"'), ord("\n")
    last_sep, start_line, lines_before, quotes, offset = -1, 1, 0, 0, 0
    stream, _ = open_table_bytes(path, dialect)
    with stream:
        while block := stream.read(8 << 20):
            a = np.frombuffer(block, np.uint8)
            q = a == quote
            outside = (np.cumsum(q) + quotes) % 2 == 0
            seps = np.flatnonzero(((a == delim) | (a == newline)) & outside) + offset
            if len(seps):
                previous = np.concatenate([[last_sep], seps[:-1]])
                over = np.flatnonzero(seps - previous - 1 > limit)
                if len(over):
                    k = int(over[0])
                    length = int(seps[k] - previous[k] - 1)
                    if k == 0:
                        return start_line, length
                    begin = int(previous[k]) + 1 - offset
                    return lines_before + int(np.count_nonzero(a[:begin] == newline)) + 1, length
                last_sep = int(seps[-1])
                upto = last_sep + 1 - offset
                start_line = lines_before + int(np.count_nonzero(a[:upto] == newline)) + 1
            offset += len(a)
            if offset - last_sep - 1 > limit:  # a field still open past the limit
                return start_line, offset - last_sep - 1
            lines_before += int(np.count_nonzero(a == newline))
            quotes += int(np.count_nonzero(q))
    return None


class _RecordError(Exception):
    """Python's csv module could not read the record starting on ``line``."""

    def __init__(self, line: int | None) -> None:
        self.line = line


def _records(
    path: Path, dialect: dict[str, Any], *, strict: bool
) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each record, with Python's csv module: slow, so
    only used to find where a problem the fast reader reported sits."""
    import csv

    enc = dialect["encoding"]
    stream, _ = open_table_bytes(path, {**dialect, "delimiter": dialect["delimiter"]})
    if dialect["delimiter"] == WHITESPACE:
        stream = io.BufferedReader(_RawAdapter(stream))  # type: ignore[arg-type]
    text = io.TextIOWrapper(
        stream, encoding="utf-8" if enc in ("utf-8", "utf8") else enc, newline=""
    )
    with text as f:
        for _ in range(dialect["skip_rows"]):
            f.readline()
        delimiter = "\t" if dialect["delimiter"] == WHITESPACE else dialect["delimiter"]
        undecodable: tuple[type[BaseException], ...] = (UnicodeDecodeError, *decode_errors())
        reader = csv.reader(f, delimiter=delimiter, strict=strict)
        start = dialect["skip_rows"] + 1
        try:
            for record in reader:
                yield start, record
                start = dialect["skip_rows"] + reader.line_num + 1
        except csv.Error:
            raise _RecordError(start) from None
        except undecodable:
            raise _RecordError(None) from None


def _first_ragged_line(path: Path, dialect: dict[str, Any]) -> int | None:
    """The first line whose record has a different field count (failure path only)."""
    width: int | None = None
    try:
        for line, record in _records(path, dialect, strict=False):
            if width is None:
                width = len(record)
            elif len(record) != width:
                return line
    except _RecordError:
        return None
    return None


def _unterminated_quote(path: Path, dialect: dict[str, Any]) -> int | None:
    """The line where a never-closed quoted field starts, or None when the odd
    quote count came from literal quotes inside unquoted fields (``5" pipe``).
    Only runs when the quote count is odd."""
    try:
        for _ in _records(path, dialect, strict=True):
            pass
    except _RecordError as err:
        return err.line
    return None


def _first_bad_utf8_line(path: Path, compression: str | None) -> int:
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    stream, _ = open_decoded(path, compression)
    with stream:
        while block := stream.read(1 << 20):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                return line + block[: max(exc.start, 0)].count(b"\n")
            line += block.count(b"\n")
    return line


def _bad_value(
    batch: pa.RecordBatch, i: int, forced: dict[str, str], row_base: int, dialect: dict[str, Any]
) -> ImportFailed:
    """The first value of column ``i`` that is not its declared type (failure path only)."""
    name = batch.schema.names[i]
    kind = forced[name]
    arr = batch.column(i)
    for k in range(len(arr)):
        v = arr[k]
        if v.is_valid and not fits(pa.array([v.as_py()], pa.large_string()), kind):
            row = row_base + k + 1
            line = row + dialect["skip_rows"] + (1 if dialect["header"] else 0)
            return ImportFailed(
                f"column {name!r} is declared {kind}, but row {row} holds {v.as_py()!r}",
                code="bad_value",
                line=line,
                row=row,
                column=name,
            )
    return ImportFailed(f"column {name!r} cannot be read as {kind}", code="bad_value")


def _explain(
    exc: pa.ArrowInvalid, bad_row: dict[str, Any], path: Path, dialect: dict[str, Any]
) -> ImportFailed:
    msg = str(exc)
    if "Empty CSV file" in msg:
        return ImportFailed("the file has no rows, only blank lines", code="empty_file", line=1)
    if bad_row:
        line = _first_ragged_line(path, dialect) or bad_row.get("number")
        where = f"line {line}" if line else "a row"
        return ImportFailed(
            f"{where} has {bad_row['actual']} fields, but the header has "
            f"{bad_row['expected']}: {str(bad_row['text'])[:200]!r}",
            code="ragged_row",
            line=line,
        )
    if "straddl" in msg:  # a field longer than Arrow's read block
        found = _long_field(path, dialect, MAX_FIELD_BYTES)
        line = found[0] if found is not None else None
        where = f"the field that starts on line {line}" if line else "a field"
        return ImportFailed(
            f"{where} is longer than {MAX_FIELD_BYTES // 1024**2} MiB, the longest CSV "
            "field DSA imports; "
            "keep longer values in a Parquet file (or outside the table)",
            code="field_too_long",
            line=line,
            limit=MAX_FIELD_BYTES,
        )
    if "invalid UTF8" in msg or "UTF8" in msg:
        line = _first_bad_utf8_line(path, dialect["compression"])
        return InvalidEncoding(
            f"line {line} is not valid UTF-8; re-save the file as UTF-8 or pass options.encoding",
            line=line,
        )
    return MalformedCsv(f"the file is not valid CSV: {msg}")

"""CSV/TSV reading in bounded memory: pass 1 of an import.

The file is read with pyarrow's streaming CSV reader, every column as text,
in blocks of a few MB. Each batch is spilled to an Arrow IPC file in the
job's temporary directory while the narrowest type that fits *every* value
of each column is worked out (``TypeInference``); pass 2 (``service``) then
reads the spill back, memory-mapped, and casts it. This keeps memory bounded
by the block size whatever the file size, and decides types from the whole
file rather than a sample, so a stray "n/a" on row 900,000 makes its column
text instead of failing the import.

Nulls: an unquoted empty field is null, a quoted empty field ("") is the
empty string. ``null_values`` replaces the default list ``[""]`` (so pass
``["", "NA"]`` to keep empty fields null and add "NA").
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.errors import Invalid

BLOCK_BYTES = 4 * 1024 * 1024
SNIFF_BYTES = 64 * 1024

# Narrowest first: the first candidate every value fits wins.
_ORDER = ("boolean", "integer", "float", "date", "datetime", "datetime_tz")
_INT = r"^[+-]?(0|[1-9][0-9]*)$"
_FLOAT = r"^[+-]?(([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|(?i:inf|infinity|nan))$"
_LEADING_ZERO = r"^[+-]?0[0-9]"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DT = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
_DT_NAIVE = _DT + "$"
_DT_TZ = _DT + r"(Z|[+-][0-9]{2}:?[0-9]{2})$"


class ImportFailed(Invalid):
    """The file cannot be imported; the problem says why and where."""


def strip_plus(arr: pa.Array) -> pa.Array:
    """Arrow's number parser refuses a leading '+'; drop it (the regexes vetted the rest)."""
    return pc.replace_substring_regex(arr, pattern=r"^\+", replacement="")


def fits(arr: pa.Array, kind: str) -> bool:
    """Whether every non-null value of a text array is a valid ``kind``."""
    values = arr.drop_null()
    if len(values) == 0:
        return True
    try:
        if kind == "boolean":
            return bool(
                pc.all(pc.is_in(pc.utf8_lower(values), pa.array(["true", "false"]))).as_py()
            )
        if kind == "integer":
            if not pc.all(pc.match_substring_regex(values, _INT)).as_py():
                return False
            pc.cast(strip_plus(values), pa.int64())
            return True
        if kind == "float":
            if pc.any(pc.match_substring_regex(values, _LEADING_ZERO)).as_py():
                return False
            if not pc.all(pc.match_substring_regex(values, _FLOAT)).as_py():
                return False
            pc.cast(strip_plus(values), pa.float64())
            return True
        if kind == "date":
            if not pc.all(pc.match_substring_regex(values, _DATE)).as_py():
                return False
            pc.cast(values, pa.date32())  # strict: 2024-02-30 is refused
            return True
        if kind == "datetime":
            if not pc.all(pc.match_substring_regex(values, _DT_NAIVE)).as_py():
                return False
            pc.cast(values, pa.timestamp("us"))
            return True
        if kind == "datetime_tz":
            if not pc.all(pc.match_substring_regex(values, _DT_TZ)).as_py():
                return False
            pc.cast(values, pa.timestamp("us", tz="UTC"))
            return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    raise AssertionError(kind)


@dataclass
class TypeInference:
    """Per column, the candidate types every value seen so far fits."""

    names: list[str]
    candidates: list[list[str]] = field(default_factory=list)
    all_int_pattern: list[bool] = field(default_factory=list)
    has_values: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.candidates = [list(_ORDER) for _ in self.names]
        self.all_int_pattern = [True for _ in self.names]
        self.has_values = [False for _ in self.names]

    def update(self, batch: pa.RecordBatch) -> None:
        for i, cands in enumerate(self.candidates):
            col = batch.column(i)
            self.has_values[i] = self.has_values[i] or col.null_count < len(col)
            if not cands:
                continue
            # test in order; a type that fails is dropped for good
            self.candidates[i] = [k for k in cands if fits(col, k)]
            if self.all_int_pattern[i] and "integer" not in self.candidates[i]:
                values = col.drop_null()
                self.all_int_pattern[i] = len(values) == 0 or bool(
                    pc.all(pc.match_substring_regex(values, _INT)).as_py()
                )

    def result(self) -> list[str]:
        out = []
        for cands, int_like, seen in zip(
            self.candidates, self.all_int_pattern, self.has_values, strict=True
        ):
            # a column of nothing but nulls is text: nothing says otherwise
            kind = cands[0] if cands and seen else "string"
            # integers too large for int64 stay exact as text, never rounded floats
            if kind == "float" and int_like:
                kind = "string"
            out.append(kind)
        return out


@dataclass
class Pass1:
    names: list[str]
    types: list[str]
    rows: int
    spill: Path
    dialect: dict[str, Any]


class _CountingReader(io.RawIOBase):
    def __init__(self, f: io.BufferedReader, on_bytes: Callable[[int], None]) -> None:
        self._f = f
        self._on_bytes = on_bytes
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._f.readinto(b)
        self.count += n or 0
        self._on_bytes(self.count)
        return n or 0


def _sniff(path: Path, options: dict[str, Any], fmt: str) -> dict[str, Any]:
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if not head:
        raise ImportFailed("the file is empty", code="empty_file", line=1)
    if b"\x00" in head:
        raise ImportFailed(
            "the file looks binary (it contains NUL bytes), not CSV text",
            code="binary_file",
            line=head[: head.index(b"\x00")].count(b"\n") + 1,
        )
    delimiter = options.get("delimiter")
    if delimiter is None:
        if fmt == "tsv":
            delimiter = "\t"
        else:
            first = head.split(b"\n", 1)[0]
            counts = {d: first.count(d.encode()) for d in (",", "\t", ";", "|")}
            delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
    return {
        "format": fmt,
        "delimiter": delimiter,
        "header": options.get("header", True),
        "encoding": (options.get("encoding") or "utf-8").lower(),
        "null_values": options.get("null_values", [""]),
        "skip_rows": options.get("skip_rows", 0),
    }


def _first_ragged_line(path: Path, dialect: dict[str, Any]) -> int | None:
    """The first line whose record has a different field count (failure path only)."""
    import csv

    enc = dialect["encoding"]
    with open(path, encoding="utf-8" if enc in ("utf-8", "utf8") else enc, newline="") as f:
        for _ in range(dialect["skip_rows"]):
            f.readline()
        reader = csv.reader(f, delimiter=dialect["delimiter"], strict=False)
        start = dialect["skip_rows"] + 1
        width: int | None = None
        try:
            for record in reader:
                if width is None:
                    width = len(record)
                elif len(record) != width:
                    return start
                start = dialect["skip_rows"] + reader.line_num + 1
        except (csv.Error, UnicodeDecodeError):
            return None
    return None


def _first_bad_utf8_line(path: Path) -> int:
    line = 1
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            try:
                block.decode("utf-8")
            except UnicodeDecodeError as exc:
                if exc.reason != "unexpected end of data":
                    return line + block[: exc.start].count(b"\n")
            line += block.count(b"\n")
    return line


def read_csv(
    path: Path,
    spill: Path,
    *,
    options: dict[str, Any],
    fmt: str,
    on_bytes: Callable[[int], None],
) -> Pass1:
    dialect = _sniff(path, options, fmt)
    bad_row: dict[str, Any] = {}

    def on_invalid(row: Any) -> str:
        bad_row.update(
            number=row.number,
            text=row.text,
            expected=row.expected_columns,
            actual=row.actual_columns,
        )
        return "error"

    encoding = dialect["encoding"]
    read_opts = pacsv.ReadOptions(
        block_size=BLOCK_BYTES,
        autogenerate_column_names=True,
        skip_rows=dialect["skip_rows"],
        encoding="utf8" if encoding in ("utf-8", "utf8") else encoding,
        use_threads=True,
    )
    parse_opts = pacsv.ParseOptions(
        delimiter=dialect["delimiter"], newlines_in_values=True, invalid_row_handler=on_invalid
    )
    names: list[str] | None = None
    inference: TypeInference | None = None
    rows = 0
    writer: pa.ipc.RecordBatchFileWriter | None = None
    raw = open(path, "rb")  # noqa: SIM115 - closed in finally
    counting = _CountingReader(raw, on_bytes)
    try:
        with open(path, "rb") as probe:  # the column count, from the first block
            ncols = len(
                pacsv.open_csv(probe, read_options=read_opts, parse_options=parse_opts).schema
            )
        reader = pacsv.open_csv(
            io.BufferedReader(counting, buffer_size=BLOCK_BYTES),
            read_options=read_opts,
            parse_options=parse_opts,
            convert_options=pacsv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in range(ncols)},
                null_values=dialect["null_values"],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                check_utf8=True,
            ),
        )
        for batch in reader:
            if names is None:
                batch, names = _take_header(batch, dialect)
                inference = TypeInference(names)
                schema = pa.schema([pa.field(n, pa.large_string()) for n in names])
                writer = pa.ipc.new_file(str(spill), schema)
            if batch.num_rows == 0:
                continue
            batch = pa.RecordBatch.from_arrays(
                [pc.cast(c, pa.large_string()) for c in batch.columns], names=names
            )
            assert inference is not None and writer is not None
            inference.update(batch)
            writer.write_batch(batch)
            rows += batch.num_rows
    except pa.ArrowInvalid as exc:
        raise _explain(exc, bad_row, path, dialect) from None
    finally:
        raw.close()
        if writer is not None:
            writer.close()
    if names is None or inference is None:
        raise ImportFailed("the file has no header row and no data", code="empty_file", line=1)
    types = inference.result()
    forced = options.get("column_types") or {}
    for col in forced:
        if col not in names:
            raise ImportFailed(
                f"options.column_types names column {col!r}, which the file does not have",
                code="unknown_column",
                column=col,
            )
    types = [forced.get(n, t) for n, t in zip(names, types, strict=True)]
    return Pass1(names=names, types=types, rows=rows, spill=spill, dialect=dialect)


def _take_header(
    batch: pa.RecordBatch, dialect: dict[str, Any]
) -> tuple[pa.RecordBatch, list[str]]:
    ncols = batch.num_columns
    if not dialect["header"]:
        return batch, [f"column_{i + 1}" for i in range(ncols)]
    first = [batch.column(i)[0].as_py() if batch.num_rows else None for i in range(ncols)]
    names: list[str] = []
    seen: dict[str, int] = {}
    line = dialect["skip_rows"] + 1
    for i, raw in enumerate(first):
        name = (raw or "").strip()
        if not name:
            raise ImportFailed(
                f"column {i + 1} of the header has no name",
                code="blank_column_name",
                line=line,
                column=i + 1,
            )
        if name in seen:
            raise ImportFailed(
                f"the header names column {name!r} twice (columns {seen[name] + 1} and {i + 1})",
                code="duplicate_column_name",
                line=line,
                column=i + 1,
            )
        seen[name] = i
        names.append(name)
    return batch.slice(1), names


def _explain(
    exc: pa.ArrowInvalid, bad_row: dict[str, Any], path: Path, dialect: dict[str, Any]
) -> ImportFailed:
    msg = str(exc)
    if bad_row:
        line = _first_ragged_line(path, dialect) or bad_row.get("number")
        where = f"line {line}" if line else "a row"
        return ImportFailed(
            f"{where} has {bad_row['actual']} fields, but the header has "
            f"{bad_row['expected']}: {str(bad_row['text'])[:200]!r}",
            code="ragged_row",
            line=line,
        )
    if "invalid UTF8" in msg or "UTF8" in msg:
        line = _first_bad_utf8_line(path)
        return ImportFailed(
            f"line {line} is not valid UTF-8; re-save the file as UTF-8 or pass options.encoding",
            code="invalid_encoding",
            line=line,
        )
    return ImportFailed(f"the file is not valid CSV: {msg}", code="malformed_csv")

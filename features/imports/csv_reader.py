"""CSV/TSV reading in bounded memory.

The file is read with pyarrow's streaming CSV reader, every column as text,
in blocks of a few MB; each batch is converted to the narrowest type that fits
*every* value seen so far (``TypeInference``), so a stray "n/a" on row
900,000 makes its column text instead of failing the import. The importer
uses the conversions as it goes and, when a later block widens a type, reads
the file once more with the final types (see ``features.imports.service``).
Memory stays bounded by the block size whatever the file size.

Nulls: an unquoted empty field is null, a quoted empty field ("") is the
empty string. ``null_values`` replaces the default list ``[""]`` (so pass
``["", "NA"]`` to keep empty fields null and add "NA"). Blank lines are
skipped.
"""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from features.imports.compression import decode_errors, open_decoded
from features.imports.compression import detect as detect_compression
from features.imports.errors import ImportFailed, InvalidEncoding, MalformedCsv, PreferenceMissed

BLOCK_BYTES = 4 * 1024 * 1024
# Wider tables are refused: every row's encoding and every chunk's metadata grow
# with the column count, and no real dataset of this kind needs more.
MAX_COLUMNS = 10_000
SNIFF_BYTES = 64 * 1024

# Narrowest first: the first candidate every value fits wins.
_ORDER = ("boolean", "integer", "float", "date", "datetime", "datetime_tz")
_LEADING_ZERO = r"^[+-]?0[0-9xX]"  # 007, 0x1f: identifiers, not numbers
_NOT_INTEGER = r"[.eEnNiI]"  # any float syntax: a decimal point, exponent, nan, inf
_TRUE_FALSE = pa.array(["true", "false"])
_PROBE_ROWS = 256


def strip_plus(arr: pa.Array) -> pa.Array:
    """Arrow's integer parser refuses a leading '+'; drop it."""
    return pc.replace_substring_regex(arr, pattern=r"^\+", replacement="")


def _cast_number(values: pa.Array, typ: pa.DataType) -> pa.Array:
    try:
        return pc.cast(values, typ)
    except pa.ArrowInvalid:
        if not pc.any(pc.starts_with(values, "+")).as_py():
            raise
        return pc.cast(strip_plus(values), typ)


def convert(arr: pa.Array, kind: str) -> pa.Array | None:
    """``arr`` (text) as ``kind``, or None when some non-null value is not a ``kind``.

    Casts first (Arrow's parsers are strict and stop at the first bad value),
    then rules out what the casts would accept but people do not mean as
    numbers: leading zeros (zip codes, ids) and hex.
    """
    if kind == "string":
        return arr
    if len(arr) > _PROBE_ROWS and convert(arr.slice(0, _PROBE_ROWS), kind) is None:
        return None  # a failing cast of a whole batch costs ~100x a succeeding one
    try:
        if kind == "boolean":
            lower = pc.utf8_lower(arr)
            if not pc.all(pc.is_in(lower.drop_null(), _TRUE_FALSE), min_count=0).as_py():
                return None
            return pc.equal(lower, "true")
        if kind in ("integer", "float"):
            out = _cast_number(arr, pa.int64() if kind == "integer" else pa.float64())
            return None if _leading_zeros(arr) else out
        if kind == "date":
            return pc.cast(arr, pa.date32())  # strict: 2024-02-30 is refused
        if kind == "datetime":
            return pc.cast(arr, pa.timestamp("us"))  # ISO 8601 without a zone
        if kind == "datetime_tz":
            return pc.cast(arr, pa.timestamp("us", tz="UTC"))  # needs Z or an offset
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    raise AssertionError(kind)


def _leading_zeros(arr: pa.Array) -> bool:
    """Whether a value like 007 or 0x1f is present (a cheap screen first: only a
    value starting with 0 and longer than "0", or with a sign, needs the regex)."""
    suspect = pc.and_(pc.starts_with(arr, "0"), pc.greater(pc.binary_length(arr), 1))
    if not (
        pc.any(suspect).as_py()
        or pc.any(pc.starts_with(arr, "-0")).as_py()
        or pc.any(pc.starts_with(arr, "+0")).as_py()
    ):
        return False
    return bool(pc.any(pc.match_substring_regex(arr, _LEADING_ZERO)).as_py())


def fits(arr: pa.Array, kind: str) -> bool:
    return convert(arr, kind) is not None


@dataclass
class TypeInference:
    """Per column, the candidate types every value seen so far fits."""

    names: list[str]
    forced: dict[str, str] = field(default_factory=dict)
    # a re-upload's columns keep the table's types when every value fits them
    # (decision 0014): a column whose value does not raises PreferenceMissed
    preferred: dict[str, str] = field(default_factory=dict)
    candidates: list[list[str]] = field(default_factory=list)
    int_like: list[bool] = field(default_factory=list)
    has_values: list[bool] = field(default_factory=list)
    has_nulls: list[bool] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.candidates = [
            [self.forced[n]] if n in self.forced else list(_ORDER) for n in self.names
        ]
        self.int_like = [True for _ in self.names]
        self.has_values = [False for _ in self.names]
        self.has_nulls = [False for _ in self.names]

    def update(self, batch: pa.RecordBatch) -> list[pa.Array | None]:
        """Narrow the candidates by one batch; returns the batch converted to the
        current best type of each column (None where that is text)."""
        typed: list[pa.Array | None] = []
        for i, name in enumerate(self.names):
            col = batch.column(i)
            nulls = col.null_count
            self.has_nulls[i] = self.has_nulls[i] or nulls > 0
            self.has_values[i] = self.has_values[i] or nulls < len(col)
            if name in self.forced:
                typed.append(self._forced(col, i, self.forced[name]))
                continue
            if name in self.preferred:
                out = convert(col, self.preferred[name])
                if out is None:
                    raise PreferenceMissed(name)
                typed.append(out)
                continue
            out = None
            cands = self.candidates[i]
            while cands:
                out = convert(col, cands[0])
                if out is not None:
                    break
                cands.pop(0)  # a type that fails is dropped for good
            if cands and cands[0] == "float" and self.int_like[i]:
                values = col.drop_null()
                self.int_like[i] = self.int_like[i] and not (
                    pc.any(pc.match_substring_regex(values, _NOT_INTEGER)).as_py()
                )
            typed.append(out)
        return typed

    def _forced(self, col: pa.Array, i: int, kind: str) -> pa.Array:
        out = convert(col, kind)
        if out is None:
            raise _BadValue(i)
        return out

    def result(self) -> list[str]:
        out = []
        for i, cands in enumerate(self.candidates):
            name = self.names[i]
            if name in self.forced or name in self.preferred:
                out.append(self.forced.get(name) or self.preferred[name])
                continue
            # a column of nothing but nulls is text: nothing says otherwise
            kind = cands[0] if cands and self.has_values[i] else "string"
            # integers too large for int64 stay exact as text, never rounded floats
            if kind == "float" and self.int_like[i]:
                kind = "string"
            out.append(kind)
        return out


class _BadValue(Exception):
    def __init__(self, column: int) -> None:
        self.column = column


@dataclass
class Pass1:
    names: list[str]
    types: list[str]
    rows: int
    dialect: dict[str, Any]


class _CountingReader:
    """The file as Arrow reads it (``read(n)`` of a few MB at a time), counting
    the bytes read (progress) and the quote characters (an odd number means a
    quote that never closes; see ``_unterminated_quote``)."""

    closed = False

    def __init__(self, f: IO[bytes], on_read: Callable[[], None]) -> None:
        self._f = f
        self._on_read = on_read
        self.quotes = 0
        self.error: BaseException | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        try:
            data = self._f.read(n)
        except decode_errors() as exc:
            self.error = exc  # Arrow reports it as an I/O error; we name the cause
            raise
        self.quotes += data.count(b'"')
        self._on_read()
        return data

    def close(self) -> None:
        self._f.close()


def _sniff(path: Path, options: dict[str, Any], fmt: str) -> dict[str, Any]:
    compression = detect_compression(path)
    stream, _ = open_decoded(path, compression)
    try:
        with stream:
            head = stream.read(SNIFF_BYTES)
    except decode_errors() as exc:
        raise _compression_failed(exc, compression) from None
    if not head:
        raise ImportFailed("the file is empty", code="empty_file", line=1)
    encoding, detected = _encoding(head, options.get("encoding"))
    text = head.decode(encoding, errors="replace") if encoding.startswith("utf-16") else None
    if text is None and b"\x00" in head:
        raise ImportFailed(
            "the file looks binary (it contains NUL bytes), not CSV text",
            code="binary_file",
            line=head[: head.index(b"\x00")].count(b"\n") + 1,
        )
    if text is not None:
        head = text.encode("utf-8")
    delimiter = options.get("delimiter")
    if delimiter is None:
        if fmt == "tsv":
            delimiter = "\t"
        else:
            first = head.split(b"\n", 1)[0]
            counts = {d: first.count(d.encode()) for d in (",", "\t", ";", "|")}
            if any(counts.values()):
                delimiter = max(counts, key=lambda d: counts[d])
            else:
                delimiter = WHITESPACE if _aligned(head) else ","
    return {
        "format": fmt,
        "compression": compression,
        "delimiter": delimiter,
        "header": options.get("header"),  # None: decided from the first block
        "encoding": encoding,
        "encoding_detected": detected,
        "null_values": options.get("null_values", [""]),
        "skip_rows": options.get("skip_rows", 0),
    }


def sniff(path: Path, options: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The file's dialect as the import records it (``header`` None: decided
    from the first block, see ``detect_header``)."""
    return _sniff(path, options, fmt)


def detect_header(path: Path, options: dict[str, Any], fmt: str) -> bool:
    """Whether the file's first row is a header, decided exactly as an import
    decides it: from the first block Arrow parses."""
    src = CsvSource(path, options=options, fmt=fmt, on_bytes=lambda n: None)
    src.header_only = True
    for _ in src:
        pass
    return bool(src.dialect["header"])


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


def _compression_failed(exc: BaseException, compression: str | None) -> ImportFailed:
    what = {"gzip": "gzip", "bz2": "bzip2", "zstd": "zstd"}.get(compression or "", "compressed")
    if isinstance(exc, EOFError) or "ends before" in str(exc):
        detail = f"the {what} stream ends early: the file is truncated; upload it again"
    else:
        detail = f"the {what} stream is corrupt: {exc}"
    return ImportFailed(detail, code="corrupt_compressed_file")


WHITESPACE = "whitespace"


def _aligned(head: bytes) -> bool:
    """A whitespace-aligned text table (as scientific data often ships): no
    delimiter characters, at least two columns, the same number of fields on
    each of the first lines, and some run of two or more blanks (alignment)."""
    lines = [ln for ln in head.splitlines()[:6] if ln.strip()]
    if len(head.splitlines()) > 6:
        lines = lines[:5]  # the 6th may be cut off by the block boundary
    if len(lines) < 2 or any(c in head for c in (b",", b"\t", b";", b"|", b'"')):
        return False
    widths = {len(ln.split()) for ln in lines}
    return len(widths) == 1 and widths.pop() >= 2 and any(b"  " in ln.strip() for ln in lines)


class _Realigned:
    """A whitespace-aligned table read as tab-separated text, line by line."""

    closed = False

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self._buf = b""
        self._tail = b""

    def __enter__(self) -> _Realigned:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buf) < n:
            block = self._f.read(1 << 20)
            if not block:
                break
            lines = block.split(b"\n")
            if self._tail:
                lines[0] = self._tail + lines[0]
            self._tail = lines.pop()
            self._buf += b"".join(b"\t".join(ln.split()) + b"\n" for ln in lines)
        if self._tail and (n < 0 or len(self._buf) < n):
            self._buf += b"\t".join(self._tail.split()) + b"\n"
            self._tail = b""
        out, self._buf = (self._buf, b"") if n < 0 else (self._buf[:n], self._buf[n:])
        return out

    def close(self) -> None:
        self._f.close()


def open_table_bytes(path: Path, dialect: dict[str, Any]) -> tuple[IO[bytes], Any]:
    """The file's bytes as the CSV parser should see them."""
    stream, consumed = open_decoded(path, dialect["compression"])
    if dialect["delimiter"] == WHITESPACE:
        return _Realigned(stream), consumed  # type: ignore[return-value]
    return stream, consumed


def _encoding(head: bytes, declared: str | None) -> tuple[str, bool]:
    """The text encoding: as declared, else from a byte-order mark, else UTF-8
    when the first block is valid UTF-8, else Windows-1252 (Latin-1 where
    1252 leaves a byte undefined). The second value says it was detected.
    A file valid UTF-8 at its start but not later is retried as 1252 by the
    importer (``service``)."""
    if declared:
        return declared.lower(), False
    if head.startswith(b"\xef\xbb\xbf"):
        return "utf-8", True  # Arrow skips the BOM itself
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16", True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.reason != "unexpected end of data" or exc.start < len(head) - 4:
            return fallback_encoding(head), True
    return "utf-8", True


def fallback_encoding(data: bytes) -> str:
    try:
        data.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


class _RawAdapter(io.RawIOBase):
    def __init__(self, f: Any) -> None:
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._f.read(len(b))
        b[: len(data)] = data
        return len(data)


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
        reader = csv.reader(f, delimiter=delimiter, strict=strict)
        start = dialect["skip_rows"] + 1
        try:
            for record in reader:
                yield start, record
                start = dialect["skip_rows"] + reader.line_num + 1
        except csv.Error:
            raise _RecordError(start) from None
        except (UnicodeDecodeError, *decode_errors()):
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


class CsvSource:
    """The file as a stream of (text batch, its conversion to the types inferred
    so far). ``types`` fixes every column's type instead (pass 2)."""

    def __init__(
        self,
        path: Path,
        *,
        options: dict[str, Any],
        fmt: str,
        on_bytes: Callable[[int], None],
        types: dict[str, str] | None = None,
        preferred: dict[str, str] | None = None,
    ) -> None:
        self.path = path
        self.options = options
        self.fixed = types
        self.preferred = preferred or {}
        self.dialect = _sniff(path, options, fmt)
        self.on_bytes = on_bytes
        self.names: list[str] = []
        self.rows = 0
        self.inference: TypeInference | None = None
        self.header_only = False  # stop once the first block decided the header

    def types(self) -> list[str]:
        assert self.inference is not None
        return self.inference.result()

    def nullable(self) -> list[bool]:
        assert self.inference is not None
        return list(self.inference.has_nulls)

    def __iter__(self) -> Iterator[tuple[pa.RecordBatch, list[pa.Array | None]]]:
        dialect = self.dialect
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
        aligned = dialect["delimiter"] == WHITESPACE
        parse_opts = pacsv.ParseOptions(
            delimiter="\t" if aligned else dialect["delimiter"],
            quote_char=False if aligned else '"',
            newlines_in_values=not aligned,
            invalid_row_handler=on_invalid,
        )
        compression = dialect["compression"]
        stream, consumed = open_table_bytes(self.path, dialect)
        counting = _CountingReader(stream, lambda: self.on_bytes(consumed()))
        forced = self.options.get("column_types") or {}
        row_base = 0
        batches: Generator[pa.RecordBatch, None, None] | None = None
        try:
            probe, _ = open_table_bytes(self.path, dialect)
            with probe:  # the column count, from the first block
                ncols = len(
                    pacsv.open_csv(probe, read_options=read_opts, parse_options=parse_opts).schema
                )
            reader = pacsv.open_csv(
                counting,
                read_options=read_opts,
                parse_options=parse_opts,
                convert_options=pacsv.ConvertOptions(
                    column_types={f"f{i}": pa.large_string() for i in range(ncols)},
                    null_values=dialect["null_values"],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=False,
                    check_utf8=True,
                ),
            )
            ahead = READ_AHEAD and not self.header_only
            batches = _read_ahead(reader) if ahead else (b for b in reader)
            for batch in batches:
                if self.inference is None:
                    check_width(batch.num_columns, line=dialect["skip_rows"] + 1)
                    if dialect["header"] is None:
                        dialect["header"] = _has_header(batch)
                    if self.header_only:
                        return
                    batch, self.names = _take_header(batch, dialect)
                    check_forced_columns(forced, self.names)
                    # the table's types apply to the same columns in the same order
                    keep = self.preferred if list(self.preferred) == self.names else {}
                    self.inference = TypeInference(
                        self.names, forced=self.fixed or forced, preferred=keep
                    )
                if batch.num_rows == 0:
                    continue
                batch = pa.RecordBatch.from_arrays(batch.columns, names=self.names)
                try:
                    typed = self.inference.update(batch)
                except _BadValue as bad:
                    declared = self.inference.forced
                    raise _bad_value(batch, bad.column, declared, row_base, dialect) from None
                row_base += batch.num_rows
                self.rows = row_base
                yield batch, typed
        except decode_errors() as exc:
            raise _compression_failed(exc, compression) from None
        except pa.ArrowInvalid as exc:
            if counting.error is not None:
                raise _compression_failed(counting.error, compression) from None
            raise _explain(exc, bad_row, self.path, dialect) from None
        finally:
            if batches is not None:
                batches.close()  # the read-ahead thread stops before the file closes
            stream.close()
        if self.inference is None:
            raise ImportFailed("the file has no header row and no data", code="empty_file", line=1)
        if counting.quotes % 2:
            line = _unterminated_quote(self.path, dialect)
            if line is not None:
                raise ImportFailed(
                    f"the quoted field that starts on line {line} is never closed: "
                    "the rest of the file would have become one value",
                    code="unterminated_quote",
                    line=line,
                )


READ_AHEAD = True
_DONE = object()


def _read_ahead(reader: Iterator[pa.RecordBatch]) -> Generator[pa.RecordBatch, None, None]:
    """``reader``'s batches, parsed one or two blocks ahead on a thread: Arrow's
    streaming reader parses a block only when asked, so without this the
    parsing and the type conversion of the previous block take turns on one
    core. Errors reach the caller where the batch would have."""
    q: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=2)
    stop = threading.Event()

    def put(item: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for batch in reader:
                if not put((batch, None)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            put((_DONE, exc))
            return
        put((_DONE, None))

    thread = threading.Thread(target=run, name="csv-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, err = q.get()
            if item is _DONE:
                if err is not None:
                    raise err
                return
            yield item
    finally:
        stop.set()
        thread.join()


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


def read_csv(
    path: Path,
    *,
    options: dict[str, Any],
    fmt: str,
    on_bytes: Callable[[int], None],
) -> Pass1:
    """The whole file at once: its names, final types and row count."""
    src = CsvSource(path, options=options, fmt=fmt, on_bytes=on_bytes)
    for _ in src:
        pass
    return Pass1(names=src.names, types=src.types(), rows=src.rows, dialect=src.dialect)


def _has_header(batch: pa.RecordBatch) -> bool:
    """Whether the first row is a header. It is, unless every cell of it fits the
    type the rows below give its column and some column is not text (so
    ``1,2,3`` over numbers is data, and ``id,name`` over anything is a header).
    A file of text columns only is taken to have a header: nothing tells."""
    if batch.num_rows < 2:
        return True
    rest = batch.slice(1)
    first = batch.slice(0, 1)
    inference = TypeInference([f"c{i}" for i in range(batch.num_columns)])
    inference.update(pa.RecordBatch.from_arrays(rest.columns, names=inference.names))
    kinds = inference.result()
    if all(k == "string" for k in kinds):
        return True
    for i, kind in enumerate(kinds):
        cell = first.column(i)
        if cell.null_count:
            return True
        if kind != "string" and convert(cell, kind) is None:
            return True
    return False


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
    if "invalid UTF8" in msg or "UTF8" in msg:
        line = _first_bad_utf8_line(path, dialect["compression"])
        return InvalidEncoding(
            f"line {line} is not valid UTF-8; re-save the file as UTF-8 or pass options.encoding",
            line=line,
        )
    return MalformedCsv(f"the file is not valid CSV: {msg}")

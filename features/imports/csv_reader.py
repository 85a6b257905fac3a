"""CSV/TSV reading in bounded memory.

The file is read with pyarrow's streaming CSV reader, every column as text,
in blocks of a few MB; each batch is converted to the narrowest type that fits
*every* value seen so far (``TypeInference``), so a stray "n/a" on row
900,000 makes its column text instead of failing the import. The importer
uses the conversions as it goes and, when a later block widens a type, reads
the file once more with the final types (see ``features.imports.write``).
Memory stays bounded by the block size whatever the file size.

Nulls: an unquoted empty field is null, a quoted empty field ("") is the
empty string. ``null_values`` replaces the default list ``[""]`` (so pass
``["", "NA"]`` to keep empty fields null and add "NA"). Blank lines are
skipped.

The rest of CSV reading lives beside it: ``csv_dialect`` (sniffing and
decoding), ``csv_types`` (type inference and conversion), ``csv_problems``
(where a bad file went wrong).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from features.imports.compression import decode_errors
from features.imports.csv_dialect import (
    WHITESPACE,
    _CountingReader,
    _sniff,
    compression_failed,
    open_table_bytes,
    sniff,
)
from features.imports.csv_problems import (
    MAX_FIELD_BYTES,
    _bad_value,
    _explain,
    _unterminated_quote,
    check_forced_columns,
    check_width,
)
from features.imports.csv_types import BadValue, TypeInference, convert, fits
from features.imports.errors import ImportFailed

__all__ = [
    "WHITESPACE",
    "CsvSource",
    "check_forced_columns",
    "check_width",
    "convert",
    "detect_header",
    "fits",
    "sniff",
]

BLOCK_BYTES = MAX_FIELD_BYTES  # a field of up to one block is always read


def detect_header(path: Path, options: dict[str, Any], fmt: str) -> bool:
    """Whether the file's first row is a header, decided exactly as an import
    decides it: from the first block Arrow parses."""
    src = CsvSource(path, options=options, fmt=fmt, on_bytes=lambda n: None)
    src.header_only = True
    for _ in src:
        pass
    return bool(src.dialect["header"])


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
        read_opts, parse_opts = _arrow_options(dialect, bad_row)
        compression = dialect["compression"]
        stream, consumed = open_table_bytes(self.path, dialect)
        counting = _CountingReader(stream, lambda: self.on_bytes(consumed()))
        row_base = 0
        batches: Generator[pa.RecordBatch, None, None] | None = None
        try:
            reader = self._open(counting, read_opts, parse_opts)
            ahead = not self.header_only
            batches = _read_ahead(reader) if ahead else (b for b in reader)
            for batch in batches:
                if self.inference is None:
                    batch = self._start(batch)
                    if self.header_only:
                        return
                assert self.inference is not None
                if batch.num_rows == 0:
                    continue
                batch = pa.RecordBatch.from_arrays(batch.columns, names=self.names)
                try:
                    typed = self.inference.update(batch)
                except BadValue as bad:
                    declared = self.inference.forced
                    raise _bad_value(batch, bad.column, declared, row_base, dialect) from None
                row_base += batch.num_rows
                self.rows = row_base
                yield batch, typed
        except decode_errors() as exc:
            raise compression_failed(exc, compression) from None
        except pa.ArrowInvalid as exc:
            if counting.error is not None:
                raise compression_failed(counting.error, compression) from None
            raise _explain(exc, bad_row, self.path, dialect) from None
        finally:
            if batches is not None:
                batches.close()  # the read-ahead thread stops before the file closes
            stream.close()
        if self.inference is None:
            raise ImportFailed("the file has no header row and no data", code="empty_file", line=1)
        self._check_quotes(counting)

    def _open(
        self, counting: _CountingReader, read_opts: Any, parse_opts: Any
    ) -> Iterator[pa.RecordBatch]:
        """Arrow's streaming reader, every column as text."""
        probe, _ = open_table_bytes(self.path, self.dialect)
        with probe:  # the column count, from the first block
            ncols = len(
                pacsv.open_csv(probe, read_options=read_opts, parse_options=parse_opts).schema
            )
        return pacsv.open_csv(  # type: ignore[no-any-return]
            counting,
            read_options=read_opts,
            parse_options=parse_opts,
            convert_options=pacsv.ConvertOptions(
                column_types={f"f{i}": pa.large_string() for i in range(ncols)},
                null_values=self.dialect["null_values"],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
                check_utf8=True,
            ),
        )

    def _start(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The first batch: decide the header, name the columns, start the
        type inference; returns the batch without its header row."""
        dialect = self.dialect
        check_width(batch.num_columns, line=dialect["skip_rows"] + 1)
        if dialect["header"] is None:
            dialect["header"] = _has_header(batch)
        if self.header_only:
            return batch
        forced = self.options.get("column_types") or {}
        batch, self.names = _take_header(batch, dialect)
        check_forced_columns(forced, self.names)
        # the table's types apply to the same columns in the same order
        keep = self.preferred if list(self.preferred) == self.names else {}
        self.inference = TypeInference(self.names, forced=self.fixed or forced, preferred=keep)
        return batch

    def _check_quotes(self, counting: _CountingReader) -> None:
        """An odd number of quotes: a quoted field never closed swallowed the rest."""
        if counting.quotes % 2:
            line = _unterminated_quote(self.path, self.dialect)
            if line is not None:
                raise ImportFailed(
                    f"the quoted field that starts on line {line} is never closed: "
                    "the rest of the file would have become one value",
                    code="unterminated_quote",
                    line=line,
                )


def _arrow_options(dialect: dict[str, Any], bad_row: dict[str, Any]) -> tuple[Any, Any]:
    """Arrow's read and parse options for the dialect; a ragged row is
    described into ``bad_row`` for the problem document."""

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
    return read_opts, parse_opts


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

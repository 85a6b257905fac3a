"""Export encoders: Arrow record batches in, bytes out, one batch at a time.

Every encoder has the same three calls: ``begin()`` (a header, often empty),
``encode(batch)`` and ``end()`` (a footer); each returns the bytes ready to
send, so an export holds one batch in memory whatever the table's size.
``Compressor`` wraps the result in a gzip or zstd stream the same way.

Value conventions shared by the text formats (csv, tsv, ndjson, xlsx):
binary as base64; csv/tsv write dates as ``YYYY-MM-DD``, datetimes as
``YYYY-MM-DD HH:MM:SS.ffffff`` (``Z`` appended for ``datetime_tz``), decimals
as their exact text (``12.30``), times as ``HH:MM:SS.ffffff``, durations in
ISO 8601, lists and structs as JSON, null as an empty field and an empty
string as ``""``; ndjson follows the JSON rules of
the data API (``features.data.service.column_values``).

Formula injection: a text cell that starts with ``=``, ``+``, ``-``, ``@``,
tab or carriage return is read as a formula by spreadsheets; csv, tsv and
xlsx exports prefix such cells (and column names) with ``'`` unless the
caller asks for ``raw=true`` (OWASP's advice).
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import zlib
from collections.abc import Mapping
from typing import Any, Protocol

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import zstandard

from core.scan import Rebatch
from features.data import service as data_service

FORMULA_START = r"^[=+\-@\t\r]"
PARQUET_ROW_GROUP_ROWS = 65_536  # rows a Parquet export's row group holds (the last fewer)
NDJSON_SLICE_ROWS = 8_192
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S%.6f"
_TEXT_DAYS = (dt.date(1900, 1, 1), dt.date(2100, 12, 31))  # dates looked up as text (see frame)
_DAY_LO = (_TEXT_DAYS[0] - dt.date(1970, 1, 1)).days
_DAY_HI = (_TEXT_DAYS[1] - dt.date(1970, 1, 1)).days
_US_A_DAY = 86_400_000_000


class Encoder(Protocol):
    def begin(self) -> bytes: ...
    def encode(self, batch: pa.RecordBatch) -> bytes: ...
    def end(self) -> bytes: ...


class _Sink:
    """A write-only file collecting what Arrow writers produce, drained per batch."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> int:
        b = bytes(data)
        self.parts.append(b)
        return len(b)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


# --------------------------------------------------------------------------- values


def neutralise(arr: pa.Array) -> pa.Array:
    """Text cells that a spreadsheet would run as a formula, prefixed with ``'``."""
    if len(arr) == 0:
        return arr
    mask = pc.match_substring_regex(arr, FORMULA_START)
    if not pc.any(mask).as_py():
        return arr
    quoted = pc.binary_join_element_wise(pa.scalar("'", arr.type), arr, pa.scalar("", arr.type))
    return pc.if_else(mask, quoted, arr)


def neutralise_name(name: str) -> str:
    return "'" + name if name[:1] in ("=", "+", "-", "@", "\t", "\r") else name


@functools.cache
def _text_tables() -> tuple[pl.Series, pl.Series, pl.Series]:
    """Every day of 1900–2100 as polars' CSV writer writes a date (so the text
    is the writer's own), the seconds of a day as ``HH:MM:SS`` and 000–999."""
    days = pl.date_range(*_TEXT_DAYS, eager=True)
    text = pl.DataFrame({"d": days}).write_csv(include_header=False).splitlines()
    clock = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]
    return pl.Series(text), pl.Series(clock), pl.Series([f"{i:03d}" for i in range(1000)])


def _day_text(days: pl.Expr) -> pl.Expr:
    """Days since 1970 (within 1900–2100) as ``YYYY-MM-DD``."""
    return pl.lit(_text_tables()[0]).gather(days - _DAY_LO)


def _datetime_text(us: pl.Expr, zoned: bool) -> pl.Expr:
    """Microseconds since 1970 (within 1900–2100) as ``DATETIME_FORMAT`` writes
    them, ``Z`` appended when ``zoned``; null stays null."""
    _, clock, digits = _text_tables()
    day = us // _US_A_DAY  # floor: times before 1970 count back from their midnight
    tod = us - day * _US_A_DAY
    parts = [
        _day_text(day),
        pl.lit(" "),
        pl.lit(clock).gather(tod // 1_000_000),
        pl.lit("."),
        pl.lit(digits).gather(tod // 1000 % 1000),
        pl.lit(digits).gather(tod % 1000),
    ]
    if zoned:
        parts.append(pl.lit("Z"))
    return pl.concat_str(parts)


def json_text(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Lists and structs as JSON text, their items in their JSON forms (the
    data API's); per value in Python, as nested values are rare."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    dumps, value = orjson.dumps, data_service.json_value
    out = [None if v is None else dumps(value(v)).decode() for v in arr.to_pylist()]
    return pa.array(out, pa.large_string())


def _json_series(s: pl.Series) -> pl.Series:
    return pl.Series(s.name, json_text(s.to_arrow()), dtype=pl.String)


def duration_text(us: pl.Expr) -> pl.Expr:
    """Microseconds as an ISO 8601 duration, ``P1DT2H3M4.5S`` (the JSON form,
    ``core.typed_values.duration_iso``), built from polars expressions."""
    a = us.abs()
    days, hours = a // _US_A_DAY, a // 3_600_000_000 % 24
    minutes, seconds, micros = a // 60_000_000 % 60, a // 1_000_000 % 60, a % 1_000_000
    frac = (
        pl.when(micros > 0)
        .then(pl.lit(".") + micros.cast(pl.String).str.zfill(6).str.strip_chars_end("0"))
        .otherwise(pl.lit(""))
    )
    clock = pl.concat_str(
        pl.when(hours > 0).then(hours.cast(pl.String) + "H").otherwise(pl.lit("")),
        pl.when(minutes > 0).then(minutes.cast(pl.String) + "M").otherwise(pl.lit("")),
        pl.when((seconds > 0) | (micros > 0) | (a == 0))
        .then(seconds.cast(pl.String) + frac + "S")
        .otherwise(pl.lit("")),
    )
    text = pl.concat_str(
        pl.when(us < 0).then(pl.lit("-")).otherwise(pl.lit("")),
        pl.lit("P"),
        pl.when(days > 0).then(days.cast(pl.String) + "D").otherwise(pl.lit("")),
        pl.when(clock != "").then(pl.lit("T") + clock).otherwise(pl.lit("")),
    )
    return pl.when(us.is_null()).then(pl.lit(None, pl.String)).otherwise(text)


def base64(arr: pa.Array) -> pa.Array:
    """Binary values as base64 text (there is no Arrow kernel for it)."""
    out = pl.from_arrow(pa.chunked_array([arr]) if isinstance(arr, pa.Array) else arr)
    assert isinstance(out, pl.Series)
    return pc.cast(out.bin.encode("base64").to_arrow(), pa.large_string())


# --------------------------------------------------------------------------- encoders


class CsvEncoder:
    """CSV or TSV by polars' CSV writer, fields quoted only where needed.

    The text conventions (binary as base64, zoned datetimes as UTC with a
    ``Z``, formula-like text neutralised unless ``raw``) are polars
    expressions (``frame``), so the same rows come out byte for byte whether
    they are written from a batch in memory (``encode``) or streamed by
    polars from the chunks' Parquet (``write``, see ``service.stream``)."""

    def __init__(self, schema: pa.Schema, *, delimiter: str = ",", raw: bool = False) -> None:
        self.schema = schema
        self.names = schema.names
        self.delimiter = delimiter
        self.raw = raw

    def begin(self) -> bytes:
        names = self.names if self.raw else [neutralise_name(n) for n in self.names]
        header = pl.DataFrame({f"c{i}": [n] for i, n in enumerate(names)})
        out = io.BytesIO()
        header.write_csv(out, include_header=False, separator=self.delimiter)
        return out.getvalue()

    def frame(
        self, rows: pl.LazyFrame, ranges: Mapping[str, tuple[Any, Any]] | None = None
    ) -> pl.LazyFrame:
        """The rows as text formats write them (see the module's docstring).

        ``ranges``: the least and greatest stored value (Parquet statistics:
        days, microseconds, bytes) of some columns over these rows. Dates and
        datetimes known to lie in 1900–2100 are then written by looking their
        text up (``_day_text``) instead of formatting each value with chrono,
        ~40 % of polars' CSV writing otherwise; text columns whose least value
        starts above ``@`` cannot hold a formula, so the check is skipped."""
        exprs = []
        for field in self.schema:
            name, t = field.name, field.type
            col = pl.col(name)
            span = ranges.get(name) if ranges else None
            if pa.types.is_large_binary(t) or pa.types.is_binary(t):
                col = col.bin.encode("base64")
            elif pa.types.is_date32(t):
                if span is not None and span[0] >= _DAY_LO and span[1] <= _DAY_HI:
                    exprs.append(_day_text(col.cast(pl.Int32)).alias(name))
                continue
            elif pa.types.is_timestamp(t):
                zoned = t.tz is not None
                us_lo, us_hi = _DAY_LO * _US_A_DAY, (_DAY_HI + 1) * _US_A_DAY - 1
                if (
                    span is not None
                    and t.unit == "us"
                    and t.tz in (None, "UTC")
                    and us_lo <= span[0]
                    and span[1] <= us_hi
                ):
                    exprs.append(_datetime_text(col.cast(pl.Int64), zoned).alias(name))
                elif zoned:  # UTC with a "Z", as documented; naive ones by DATETIME_FORMAT
                    exprs.append(col.dt.strftime(DATETIME_FORMAT + "Z").alias(name))
                continue
            elif (exact := _exact_text(col, t)) is not None:
                exprs.append(exact.alias(name))
                continue
            elif not (pa.types.is_large_string(t) or pa.types.is_string(t)):
                continue
            elif span is not None and span[0][:1] > b"@":
                continue  # no value starts with a formula character (all sort below "A")
            if not self.raw:
                col = (
                    pl.when(col.str.contains(FORMULA_START)).then(pl.lit("'") + col).otherwise(col)
                )
            exprs.append(col.alias(name))
        return rows.with_columns(exprs) if exprs else rows

    def write(
        self, rows: pl.LazyFrame, file: Any, ranges: Mapping[str, tuple[Any, Any]] | None = None
    ) -> None:
        """Write ``rows`` (no header) to a binary file object."""
        self.frame(rows, ranges).sink_csv(
            file,
            include_header=False,
            separator=self.delimiter,
            datetime_format=DATETIME_FORMAT,
        )

    def encode(self, batch: pa.RecordBatch) -> bytes:
        if batch.num_rows == 0:
            return b""
        # polars' CSV writer: ~3x pyarrow's on this table (docs/benchmarks.md, Exports)
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        out = io.BytesIO()
        self.write(frame.lazy(), out)
        return out.getvalue()

    def end(self) -> bytes:
        return b""


def _exact_text(col: pl.Expr, t: pa.DataType) -> pl.Expr | None:
    """Decimals as their exact text, times as ``HH:MM:SS.ffffff``, durations in
    ISO 8601, lists and structs as JSON; None for the other types."""
    if pa.types.is_decimal(t):
        return col.cast(pl.String)
    if pa.types.is_time(t):
        return col.dt.strftime("%H:%M:%S%.6f")
    if pa.types.is_duration(t):
        return duration_text(col.dt.total_microseconds())
    if pa.types.is_nested(t):
        return col.map_batches(_json_series, return_dtype=pl.String)
    return None


class NdjsonEncoder:
    """One JSON object per line, values as the data API writes them."""

    def __init__(self, schema: pa.Schema, kinds: list[str]) -> None:
        self.names = schema.names
        self.kinds = kinds

    def begin(self) -> bytes:
        return b""

    def encode(self, batch: pa.RecordBatch) -> bytes:
        # Python objects per value: a few thousand rows at a time keeps them few
        step = NDJSON_SLICE_ROWS
        return b"".join(self._encode(batch.slice(i, step)) for i in range(0, batch.num_rows, step))

    def _encode(self, batch: pa.RecordBatch) -> bytes:
        cols = [
            data_service.column_values(pa.chunked_array([batch.column(i)]), k)
            for i, k in enumerate(self.kinds)
        ]
        names = self.names
        dumps = orjson.dumps
        opt = orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE
        return b"".join(
            [
                dumps(dict(zip(names, row, strict=True)), option=opt)
                for row in zip(*cols, strict=True)
            ]
        )

    def end(self) -> bytes:
        return b""


class ArrowEncoder:
    """An Arrow IPC stream (``application/vnd.apache.arrow.stream``), a record
    batch per chunk of each window as read (fixed sizes would copy every
    column once more: measured, ~25 % of a fresh import's Arrow export)."""

    def __init__(self, schema: pa.Schema) -> None:
        self.sink = _Sink()
        self.writer = ipc.new_stream(pa.PythonFile(self.sink, mode="w"), schema)

    def begin(self) -> bytes:
        return self.sink.drain()

    def encode(self, batch: pa.RecordBatch) -> bytes:
        self.writer.write_batch(batch)
        return self.sink.drain()

    def end(self) -> bytes:
        self.writer.close()
        return self.sink.drain()


class ParquetEncoder:
    """A Parquet file of row groups of exactly ``PARQUET_ROW_GROUP_ROWS`` rows
    (the last one fewer), however the batches come (a filter's leftovers, a
    short first window, a fragmented version's gathered rows), with
    statistics and the page index on: the same rows make the same file, and
    readers over HTTP fetch only the row groups and columns a query needs."""

    def __init__(self, schema: pa.Schema, *, codec: str) -> None:
        self.sink = _Sink()
        self.writer = pq.ParquetWriter(
            pa.PythonFile(self.sink, mode="w"),
            schema,
            compression=codec,
            write_page_index=True,
        )
        self.groups = Rebatch(PARQUET_ROW_GROUP_ROWS)

    def begin(self) -> bytes:
        return self.sink.drain()

    def encode(self, batch: pa.RecordBatch) -> bytes:
        for table in self.groups.add(pa.Table.from_batches([batch])):
            self.writer.write_table(table, row_group_size=PARQUET_ROW_GROUP_ROWS)
        return self.sink.drain()

    def end(self) -> bytes:
        last = self.groups.rest()
        if last is not None:
            self.writer.write_table(last, row_group_size=PARQUET_ROW_GROUP_ROWS)
        self.writer.close()
        return self.sink.drain()


# --------------------------------------------------------------------------- compression


class Compressor:
    """A streaming gzip or zstd compressor (``none`` passes bytes through)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._obj: Any
        if kind == "gzip":
            self._obj = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip header and trailer
        elif kind == "zstd":
            self._obj = zstandard.ZstdCompressor(level=3).compressobj()
        else:
            self._obj = None

    def compress(self, data: bytes) -> bytes:
        if self._obj is None or not data:
            return data
        return self._obj.compress(data)  # type: ignore[no-any-return]

    def flush(self) -> bytes:
        if self._obj is None:
            return b""
        return self._obj.flush()  # type: ignore[no-any-return]

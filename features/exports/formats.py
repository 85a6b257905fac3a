"""Export encoders: Arrow record batches in, bytes out, one batch at a time.

Every encoder has the same three calls: ``begin()`` (a header, often empty),
``encode(batch)`` and ``end()`` (a footer); each returns the bytes ready to
send, so an export holds one batch in memory whatever the table's size.
``Compressor`` wraps the result in a gzip or zstd stream the same way.

Value conventions shared by the text formats (csv, tsv, ndjson, xlsx):
binary as base64; csv/tsv write dates as ``YYYY-MM-DD``, datetimes as
``YYYY-MM-DD HH:MM:SS.ffffff`` (``Z`` appended for ``datetime_tz``), null as
an empty field and an empty string as ``""``; ndjson follows the JSON rules of
the data API (``features.data.service.column_values``).

Formula injection: a text cell that starts with ``=``, ``+``, ``-``, ``@``,
tab or carriage return is read as a formula by spreadsheets; csv, tsv and
xlsx exports prefix such cells (and column names) with ``'`` unless the
caller asks for ``raw=true`` (OWASP's advice).
"""

from __future__ import annotations

import io
import zlib
from typing import Any, Protocol

import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import zstandard

from features.data import service as data_service

FORMULA_START = r"^[=+\-@\t\r]"
PARQUET_ROW_GROUP_ROWS = 65_536
NDJSON_SLICE_ROWS = 8_192


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

    def frame(self, rows: pl.LazyFrame) -> pl.LazyFrame:
        """The rows as text formats write them (see the module's docstring)."""
        exprs = []
        for field in self.schema:
            col = pl.col(field.name)
            t = field.type
            if pa.types.is_large_binary(t) or pa.types.is_binary(t):
                col = col.bin.encode("base64")
            elif pa.types.is_timestamp(t) and t.tz is not None:
                # UTC with a "Z", as documented; naive ones by datetime_format in write
                exprs.append(col.dt.strftime("%Y-%m-%d %H:%M:%S%.6fZ").alias(field.name))
                continue
            elif not (pa.types.is_large_string(t) or pa.types.is_string(t)):
                continue
            if not self.raw:
                col = (
                    pl.when(col.str.contains(FORMULA_START)).then(pl.lit("'") + col).otherwise(col)
                )
            exprs.append(col.alias(field.name))
        return rows.with_columns(exprs) if exprs else rows

    def write(self, rows: pl.LazyFrame, file: Any) -> None:
        """Write ``rows`` (no header) to a binary file object."""
        self.frame(rows).sink_csv(
            file,
            include_header=False,
            separator=self.delimiter,
            datetime_format="%Y-%m-%d %H:%M:%S%.6f",
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
    """An Arrow IPC stream (``application/vnd.apache.arrow.stream``)."""

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
    """A Parquet file: one row group per batch (up to ``PARQUET_ROW_GROUP_ROWS``
    rows), statistics and the page index on, so readers over HTTP fetch only
    the row groups and columns a query needs."""

    def __init__(self, schema: pa.Schema, *, codec: str) -> None:
        self.sink = _Sink()
        self.writer = pq.ParquetWriter(
            pa.PythonFile(self.sink, mode="w"),
            schema,
            compression=codec,
            write_page_index=True,
        )

    def begin(self) -> bytes:
        return self.sink.drain()

    def encode(self, batch: pa.RecordBatch) -> bytes:
        if batch.num_rows:
            self.writer.write_batch(batch, row_group_size=PARQUET_ROW_GROUP_ROWS)
        return self.sink.drain()

    def end(self) -> bytes:
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

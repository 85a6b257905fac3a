"""CSV dialects: how a file's bytes are read as records.

``sniff`` detects (or takes from the options) the compression, encoding,
delimiter (a comma, semicolon, tab, pipe, or aligned whitespace), header and
null values; ``open_table_bytes`` gives the file's bytes as UTF-8 as Arrow's
reader wants them, whatever the compression and encoding.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from features.imports.compression import InflatesTooFar, decode_errors, open_decoded
from features.imports.compression import detect as detect_compression
from features.imports.errors import ImportFailed

SNIFF_BYTES = 64 * 1024


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
        raise compression_failed(exc, compression) from None
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


def compression_failed(exc: BaseException, compression: str | None) -> ImportFailed:
    what = {"gzip": "gzip", "bz2": "bzip2", "zstd": "zstd"}.get(compression or "", "compressed")
    if isinstance(exc, InflatesTooFar):
        return ImportFailed(
            f"the {what} file inflates past the limit of {exc.limit} bytes "
            "(DSA_MAX_DECOMPRESSED_BYTES): a compression bomb, or a file too large to import",
            code="too_large",
            limit=exc.limit,
        )
    if isinstance(exc, EOFError) or "ends before" in str(exc):
        detail = f"the {what} stream ends early: the file is truncated; upload it again"
    else:
        detail = f"the {what} stream is corrupt: {exc}"
    return ImportFailed(detail, code="corrupt_compressed_file")

"""Compressed uploads: gzip, bzip2 and zstd, recognised by their magic bytes.

Each is read as a stream, so memory stays bounded. A stream that ends before
its end-of-stream marker (a truncated upload) is an error, never a silently
shorter table: Python's ``gzip`` and ``bz2`` raise ``EOFError`` themselves;
for zstd, whose stream readers return what they have, ``_ZstdReader`` checks
that the last frame was complete. (pyarrow's CompressedInputStream was tried
first and accepts truncated gzip without a word, hence these.)
"""

from __future__ import annotations

import bz2
import gzip
import io
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import zstandard

from core.config import get_settings

MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bz2"), (b"\x28\xb5\x2f\xfd", "zstd"))
SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
_BLOCK = 1 << 20


class CompressedDataError(Exception):
    """The compressed stream is corrupt or ends early."""


class InflatesTooFar(CompressedDataError):
    """The stream inflates past ``DSA_MAX_DECOMPRESSED_BYTES`` (a bomb, or just too big)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"it inflates past the limit of {limit} bytes")
        self.limit = limit


class _Capped(io.RawIOBase):
    """A decompressed stream that stops with ``InflatesTooFar`` past ``limit`` bytes."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self._inner, self._limit, self._seen = inner, limit, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self._inner.read(len(b))
        self._seen += len(data)
        if self._seen > self._limit:
            raise InflatesTooFar(self._limit)
        b[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def detect(path: Path) -> str | None:
    with open(path, "rb") as f:
        head = f.read(4)
    for magic, name in MAGIC:
        if head.startswith(magic):
            return name
    return None


class _ZstdReader(io.RawIOBase):
    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._buf = b""
        self._eof = False
        self._started = False

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not self._buf and not self._eof:
            data = self._raw.read(_BLOCK)
            if not data:
                self._eof = True
                if not self._obj.eof and self._started:
                    raise CompressedDataError("the zstd stream ends before its last frame does")
                break
            self._started = True
            try:
                out = self._obj.decompress(data)
                while self._obj.eof and self._obj.unused_data:  # several frames in a row
                    rest = self._obj.unused_data
                    self._obj = self._dctx.decompressobj()
                    out += self._obj.decompress(rest)
            except zstandard.ZstdError as exc:
                raise CompressedDataError(f"the zstd stream is corrupt: {exc}") from None
            self._buf = out
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def open_decoded(
    path: Path, compression: str | None, limit: int | None = None
) -> tuple[IO[bytes], Callable[[], int]]:
    """The file's decompressed bytes as a stream, and a function giving how many
    bytes of the file itself have been consumed (for progress). A compressed
    stream that inflates past ``limit`` (``DSA_MAX_DECOMPRESSED_BYTES``) raises
    ``InflatesTooFar`` as it is read: nothing past the limit is ever produced."""
    raw = open(path, "rb")  # noqa: SIM115 - closed with the returned stream
    if compression is None:
        return raw, raw.tell
    inner: IO[bytes]
    if compression == "gzip":
        inner = gzip.GzipFile(fileobj=raw)  # type: ignore[assignment]
    elif compression == "bz2":
        inner = bz2.BZ2File(raw)  # type: ignore[assignment]
    elif compression == "zstd":
        inner = io.BufferedReader(_ZstdReader(raw), _BLOCK)
    else:
        raise ValueError(compression)
    cap = limit if limit is not None else get_settings().max_decompressed_bytes
    return io.BufferedReader(_Capped(inner, cap), _BLOCK), raw.tell


def decode_errors() -> tuple[type[BaseException], ...]:
    """What reading a corrupt or truncated stream raises."""
    import zlib

    return (CompressedDataError, EOFError, gzip.BadGzipFile, zlib.error, OSError)

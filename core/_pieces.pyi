"""Type stub of the C extension core/_pieces.c."""

from typing import Any

def decode(
    body: Any,
    offset: int,
    n: int,
    chunks: int,
    widths: bytes,
    chunk: Any,
    start: Any,
    length: Any,
    pos: Any,
    order: Any,
) -> None: ...

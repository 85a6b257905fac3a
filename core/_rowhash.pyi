"""Type stub of the C extension core/_rowhash.c."""

from collections.abc import Sequence
from typing import Any

ROW_HASH_LEN: int
ROW_ENCODING: str

def blake3_digest(data: Any, out_len: int = 32) -> bytes: ...
def hash_rows(nrows: int, columns: Sequence[tuple[Any, ...]], out_len: int = 16) -> bytes: ...

"""What every file reader of the importer provides.

``CsvSource``, ``ParquetSource`` and ``ExcelSource`` (one sheet) share this
shape, so the chunking, dedup and commit path in ``service`` serves them all.
They are constructed with ``(path, *, options, fmt, on_bytes, types=None)``:
``types`` fixes column types (a second pass, or the table's types when
appending), ``on_bytes`` reports how much of the file has been read.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import pyarrow as pa


class TableSource(Protocol):
    names: list[str]
    rows: int  # rows yielded so far
    dialect: dict[str, Any]  # what was detected or applied, for provenance

    def types(self) -> list[str]:
        """Each column's logical type from what was read so far (final once read)."""
        ...

    def nullable(self) -> list[bool]: ...

    def __iter__(self) -> Iterator[tuple[pa.RecordBatch, list[pa.Array | None]]]:
        """Batches as read, each with its columns converted to ``types()``
        (None where a column is still text)."""
        ...

"""The values an import passes around (instead of long argument lists and
tuples): the job, what every table of one import shares, what one pass over
a table's file is asked to write, and what it wrote."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from core.objects import Manifest, Piece, Schema
from core.storage import ObjectStore
from features.imports.acquire import TableInput
from features.imports.models import ImportRequest
from features.imports.progress import Progress


@dataclass(frozen=True)
class ImportJob:
    """A claimed import job, its params read back as the request."""

    id: uuid.UUID
    dataset_id: uuid.UUID
    branch: str
    created_at: datetime  # the commit's time: a retried import makes the same commit
    attempts: int
    upload_id: uuid.UUID | None
    request: ImportRequest
    created_by: uuid.UUID | None = None  # the author, whose rights are checked as it lands

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ImportJob:
        return cls(
            id=row["id"],
            dataset_id=row["dataset_id"],
            branch=row["ref_name"],
            created_at=row["created_at"],
            attempts=row["attempts"],
            upload_id=row.get("upload_id"),
            request=ImportRequest.model_validate(row["params"]),
            created_by=row.get("created_by"),
        )

    @property
    def instance(self) -> str:
        """The job's URL, the problem document's ``instance``."""
        return f"/api/v1/jobs/{self.id}"


@dataclass(frozen=True)
class BuildContext:
    """Shared by every table of one import."""

    store: ObjectStore
    work: Path  # the job's scratch directory
    request: ImportRequest
    progress: Progress


@dataclass(frozen=True)
class WriteJob:
    """One table's file to read and write as chunks.

    ``target``: the table's schema when appending (the file must have its
    columns). ``previous``: the version replaced or upserted into, whose
    stored rows are re-used. ``key``: the primary key of an upsert."""

    table: TableInput
    options: dict[str, Any]
    target: Schema | None = None
    previous: tuple[Schema, Manifest] | None = None
    key: list[str] | None = None


@dataclass(frozen=True)
class Written:
    """A table's rows as written: its columns, the manifest's pieces, the
    rows read and the dialect detected (for provenance)."""

    names: list[str]
    types: list[str]
    nullable: list[bool]
    pieces: Sequence[Piece]
    rows: int
    dialect: dict[str, Any] = field(default_factory=dict)
    # the rows not re-used from the version replaced share no row hash with
    # its rows left out (a match of every row against every row; decision 0041)
    disjoint: bool = False

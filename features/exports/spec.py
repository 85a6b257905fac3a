"""What an export is: its options, normalised, and everything a stream of
it needs once access is checked and the ref resolved (``service.prepare``);
reading its rows needs no database afterwards."""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from dataclasses import dataclass
from typing import Any

import blake3
import orjson
import polars as pl

from core.objects import Schema

# v2: CSV and TSV written by polars (quoted only where needed); v3: Parquet row
# groups of a fixed size whatever the layout, Arrow batches as windows are read
EXPORT_VERSION = "dsa.export.v3"
FORMATS: dict[str, tuple[str, str]] = {  # format -> (file extension, media type)
    "csv": ("csv", "text/csv; charset=utf-8"),
    "tsv": ("tsv", "text/tab-separated-values; charset=utf-8"),
    "parquet": ("parquet", "application/vnd.apache.parquet"),
    "xlsx": ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    "ndjson": ("ndjson", "application/x-ndjson"),
    "arrow": ("arrows", "application/vnd.apache.arrow.stream"),
}
COMPRESSIONS = {
    "none": ("", None),
    "gzip": (".gz", "application/gzip"),
    "zstd": (".zst", "application/zstd"),
}
RAW_FORMATS = {"csv", "tsv", "xlsx"}  # where formula neutralisation applies
_FILE_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def default_compression(fmt: str) -> str:
    """Parquet is compressed inside (zstd) unless asked otherwise; the rest is not."""
    return "zstd" if fmt == "parquet" else "none"


@dataclass(frozen=True)
class Options:
    """An export's options, normalised: the same export always has the same ones."""

    table: str
    format: str
    columns: tuple[str, ...] | None
    filter: str | None
    compression: str
    raw: bool

    def params(self) -> dict[str, str]:
        """As query parameters, defaults left out."""
        p = {"table": self.table, "format": self.format}
        if self.columns is not None:
            p["columns"] = ",".join(self.columns)
        if self.filter is not None:
            p["filter"] = self.filter
        if self.compression != default_compression(self.format):
            p["compression"] = self.compression
        if self.raw:
            p["raw"] = "true"
        return p


@dataclass(frozen=True)
class Export:
    dataset: dict[str, Any]
    ref: str
    commit_id: str
    created_at: str
    options: Options
    schema: Schema
    manifest_id: str
    row_count: int
    read_columns: tuple[str, ...]  # output columns, then filter-only columns
    out_count: int  # how many of read_columns are written
    predicate: pl.Expr | None
    schema_id: str

    @property
    def pinned(self) -> bool:
        """Addressed by full commit id: the URL's content can never change."""
        return self.ref == self.commit_id

    @property
    def digest(self) -> str:
        doc = {"v": EXPORT_VERSION, "commit": self.commit_id, **self.options.params()}
        return blake3.blake3(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()

    @property
    def etag(self) -> str:
        return f'"{self.commit_id}-{self.digest[:16]}"'

    @property
    def media_type(self) -> str:
        comp = COMPRESSIONS[self.options.compression][1]
        if comp and self.options.format != "parquet":
            return comp
        return FORMATS[self.options.format][1]

    @property
    def filename(self) -> str:
        o = self.options
        ext = FORMATS[o.format][0]
        if o.format != "parquet":
            ext += COMPRESSIONS[o.compression][0]
        stem = f"{self.dataset['name']}-{o.table}-{self.commit_id[:12]}"
        return f"{_FILE_SAFE.sub('_', stem).strip('_.') or 'export'}.{ext}"

    @property
    def last_modified(self) -> str:
        when = dt.datetime.fromisoformat(self.created_at.replace("Z", "+00:00"))
        return email.utils.format_datetime(when.astimezone(dt.UTC), usegmt=True)

    @property
    def columns(self) -> list[tuple[str, str]]:
        by_name = {c.name: c for c in self.schema.columns}
        return [(n, by_name[n].type) for n in self.read_columns[: self.out_count]]

    @property
    def materialised_key(self) -> str:
        return f"exports/{self.digest}"

"""What an import is asked to do, validated once and stored typed.

An ``ImportRequest`` is built from the request that asked for the import
(``from_form`` for a multipart upload, ``from_url`` for a URL import, later a
schedule), stored as the job's ``params`` (``model_dump``) and read back
typed by the worker (``ImportRequest.model_validate``). Its JSON form is the
job's params as they have always been stored, so a job queued by an older
version runs unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.errors import InvalidRequest
from features.imports.errors import UnsupportedFormat
from features.imports.fetch import filename_of, redact
from features.imports.formats import (
    SUPPORTED_EXTENSIONS,
    detect_format,
    table_name_from_file,
    validate_options,
)

Mode = Literal["replace", "append", "upsert"]
MODES: tuple[Mode, ...] = ("replace", "append", "upsert")
_TABLE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\- ]{0,127}$")
_COMMIT_ID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ReceivedFile:
    """An uploaded file, hashed as it arrived: already in the object store at
    ``key`` (streamed there by the upload route), or on local disk at ``path``."""

    path: Path | None
    filename: str
    size: int
    blake3: str
    key: str | None = None


class UploadRef(BaseModel):
    """The stored upload an import reads."""

    model_config = ConfigDict(frozen=True)
    object_key: str
    filename: str
    size: int
    blake3: str


class UrlSource(BaseModel):
    """The mirrors a URL import downloads from, tried in order; for a
    schedule's run, the schedule and the validators of its last download
    (a conditional request: 304 ends the run unchanged)."""

    model_config = ConfigDict(frozen=True)
    urls: list[str]
    checksum: str | None = None
    schedule_id: str | None = None
    etag: str | None = None
    last_modified: str | None = None

    def conditional(self) -> dict[str, str]:
        """The request headers that ask for the file only if it changed."""
        out = {}
        if self.etag:
            out["If-None-Match"] = self.etag
        if self.last_modified:
            out["If-Modified-Since"] = self.last_modified
        return out


class UrlFields(BaseModel):
    """What a request to import from URLs says (a URL import's body, a
    schedule's): ``url`` and/or ``urls`` (mirrors, in order), checked to be
    http(s) URLs, and how to read the file."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(default=None, max_length=4096)
    urls: list[str] | None = Field(default=None, min_length=1, max_length=10)
    checksum: str | None = Field(default=None, pattern=r"^(blake3|sha256):[0-9a-fA-F]{64}$")
    mode: str | None = None
    message: str | None = Field(default=None, max_length=10_000)
    table: str | None = None
    options: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _some_url(self) -> UrlFields:
        urls = self.all_urls()
        if not urls:
            raise ValueError("give 'url' or 'urls'")
        for u in urls:
            parts = urlsplit(u)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"{u!r} is not an http(s) URL")
        return self

    def all_urls(self) -> list[str]:
        return ([self.url] if self.url else []) + list(self.urls or [])


class ImportRequest(BaseModel):
    """One import: what to read, how, and where its table goes.

    ``format`` is the upload's (``archive`` and ``excel`` hold several
    tables; each table's own format and name are the acquire stage's
    ``TableInput``). ``table_given``: the client named the table."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    mode: Mode = "replace"
    table: str
    table_given: bool = False
    message: str
    expected_commit_id: str | None = None
    options: dict[str, Any] = {}
    format: str
    primary_key: list[str] | None = None
    author: str = "unknown"
    upload: UploadRef | None = None
    source: UrlSource | None = None

    def params(self) -> dict[str, Any]:
        """The job's stored params."""
        return self.model_dump(mode="json")


def from_form(
    fields: dict[str, str], filename: str, primary_key: list[str] | None = None
) -> ImportRequest:
    """The request of a multipart upload's form fields (strings; ``options``
    as JSON); 422 listing every bad field, 415 for an unknown format."""
    options: dict[str, Any] = {}
    bad_options = False
    if fields.get("options"):
        try:
            options = json.loads(fields["options"])
            if not isinstance(options, dict):
                raise ValueError
        except ValueError:
            bad_options, options = True, {}
    return _validated(
        bad_options,
        filename=filename,
        primary_key=primary_key,
        mode=fields.get("mode") or "replace",
        table=fields.get("table") or None,
        message=fields.get("message") or None,
        expected=fields.get("expected_commit_id") or None,
        options=options,
    )


def filename_for_url(url: str) -> str:
    """The file name a URL import goes by; without an extension it is read as CSV."""
    name = filename_of(url)
    return name if "." in name else name + ".csv"


def from_url(
    urls: list[str],
    *,
    checksum: str | None,
    mode: str | None,
    message: str | None,
    table: str | None,
    options: dict[str, Any] | None,
    expected_commit_id: str | None,
    primary_key: list[str] | None,
) -> ImportRequest:
    """The request of a URL import (its file name and format from the first URL)."""
    request = _validated(
        False,
        filename=filename_for_url(urls[0]),
        primary_key=primary_key,
        mode=mode or "replace",
        table=table or None,
        message=message if message is not None else f"Import {redact(urls[0])}",
        expected=expected_commit_id or None,
        options=options or {},
    )
    return request.model_copy(update={"source": UrlSource(urls=urls, checksum=checksum)})


def _validated(
    bad_options: bool,
    *,
    filename: str,
    primary_key: list[str] | None,
    mode: str,
    table: str | None,
    message: str | None,
    expected: str | None,
    options: dict[str, Any],
) -> ImportRequest:
    errors: list[dict[str, str]] = []
    if mode not in MODES:
        errors.append({"field": "mode", "message": f"must be one of {', '.join(MODES)}"})
    elif mode == "upsert" and not primary_key:
        errors.append(
            {
                "field": "mode",
                "message": "upsert needs the dataset's primary_key; set it with PATCH first",
            }
        )
    if bad_options:
        errors.append({"field": "options", "message": "must be a JSON object"})
    errors.extend({"field": f"options.{k}", "message": m} for k, m in validate_options(options))
    name = table or table_name_from_file(filename)
    if not _TABLE.match(name):
        errors.append({"field": "table", "message": "1-128 letters, digits, _ . - or spaces"})
    if expected is not None and not _COMMIT_ID.fullmatch(expected):
        errors.append({"field": "expected_commit_id", "message": "must be a full commit id"})
    if errors:
        names = ", ".join(e["field"] for e in errors)
        raise InvalidRequest(f"the upload is invalid: {names}", errors=errors)
    fmt = detect_format(filename, options)
    if fmt is None:
        raise UnsupportedFormat(
            f"cannot import {filename!r}: supported formats are " + ", ".join(SUPPORTED_EXTENSIONS)
        )
    return ImportRequest(
        mode=mode,  # type: ignore[arg-type]  # checked against MODES above
        table=name,
        table_given=table is not None,
        message=message or f"Import {filename}",
        expected_commit_id=expected,
        options=options,
        format=fmt,
        primary_key=primary_key,
    )

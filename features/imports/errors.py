"""The import feature's errors.

    ImportFailed (Invalid, 422)       the file cannot be imported; ``code`` names why
    ├── InvalidEncoding               invalid_encoding: bytes that are not the encoding read
    ├── MalformedCsv                  malformed_csv: not valid CSV (quotes, fields)
    └── UrlNotUsable                  a mirror answered but cannot serve the file
        ├── UrlNotFound               url_not_found: 404
        └── UrlRefused                url_refused: not http(s), redirects nowhere, an error status
    UnsupportedFormat (415)           unsupported_format: no reader for the file's name
    QueueDown (503)                   queue_down: the broker did not take the job
    Upload conflicts (``ref_conflict``) are ``features.refs.errors.RefConflict``.

A file problem is an ``ImportFailed`` whose ``code`` says which (``empty_file``,
``bad_value``, ``schema_mismatch``, ...) and whose extra members say where
(``file``, ``sheet``, ``line``, ``column``): the job's problem document.
Only the problems the importer reacts to have classes of their own (the
importer catches classes, never compares codes); decision 0018.

``JobCancelled`` and ``PreferenceMissed`` are not problems but signals
inside an import: a cancelled job stops and commits nothing; a value that
no longer fits its column's old type makes the file be read again.
"""

from __future__ import annotations

from typing import Any

from core.errors import Forbidden, Invalid, Unavailable, UnsupportedMedia


class ImportFailed(Invalid):
    """The file cannot be imported; the problem says why and where."""

    default_code = "invalid_file"


class NoLongerAllowed(Forbidden):
    """The job's author lost write access to the dataset (or it was deleted)
    while the job waited or ran: it does not land."""

    default_code = "no_longer_allowed"


class InvalidEncoding(ImportFailed):
    default_code = "invalid_encoding"


class MalformedCsv(ImportFailed):
    default_code = "malformed_csv"


class UrlNotUsable(ImportFailed):
    """A mirror that answered but cannot serve the file: the next one is tried."""

    default_code = "url_refused"


class UrlNotFound(UrlNotUsable):
    default_code = "url_not_found"


class UrlRefused(UrlNotUsable):
    default_code = "url_refused"


class UnsupportedFormat(UnsupportedMedia):
    default_code = "unsupported_format"


class QueueDown(Unavailable):
    """The job was recorded but could not be queued."""

    default_code = "queue_down"


class JobCancelled(Exception):
    """The job was cancelled while it ran: stop, commit nothing."""


class PreferenceMissed(Exception):
    """A value of ``column`` does not fit the type the table had (the file is
    read again with that column's type inferred)."""

    def __init__(self, column: str, *args: Any) -> None:
        super().__init__(column, *args)
        self.column = column

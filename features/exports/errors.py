"""Exports' problem codes (see core/errors.py for the tree and the rules)."""

from __future__ import annotations

from core.errors import DsaError, Forbidden, Invalid


class UnknownExportFormat(Invalid):
    default_code = "unknown_export_format"


class UnknownCompression(Invalid):
    default_code = "unknown_compression"


class UnsupportedCompression(Invalid):
    """A compression the format cannot take (xlsx is a zip archive already)."""

    default_code = "unsupported_compression"


class DuplicateColumn(Invalid):
    default_code = "duplicate_column"


class BadSignature(Forbidden):
    """An export link altered, signed with a rotated key, or whose user is gone."""

    default_code = "bad_signature"


class LinkExpired(Forbidden):
    default_code = "link_expired"


class LinkLifetimeTooLong(Invalid):
    default_code = "link_lifetime_too_long"


class RangeNotSatisfiable(DsaError):
    """416 for a byte range past the end of a Parquet export: a category of
    its own, since only exports answer ranges."""

    status = 416
    title = "Range not satisfiable"
    default_code = "range_not_satisfiable"

"""Reading's problem codes, also raised by compare and exports, which read
tables the same way (see core/errors.py for the tree and the rules)."""

from __future__ import annotations

from core.errors import BadRequest, Invalid, NotFound


class TableNotFound(NotFound):
    default_code = "table_not_found"


class TableRequired(Invalid):
    """A version with several tables (or none) and no ``table`` named."""

    default_code = "table_required"


class UnknownColumn(Invalid):
    """Columns asked for by name that the table does not have (``columns``)."""

    default_code = "unknown_column"


class UnknownFilterColumn(BadRequest, UnknownColumn):
    """An unknown column in a filter or sort: 400 with ``position`` and
    ``column``, like the other filter errors. Still an ``UnknownColumn``."""

    default_code = "unknown_column"


class InvalidFilter(BadRequest):
    """A filter's syntax or type error, with ``position``."""

    default_code = "invalid_filter"


class InvalidSort(BadRequest):
    """A sort's syntax error, with ``position``."""

    default_code = "invalid_sort"

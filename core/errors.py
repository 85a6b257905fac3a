"""Domain errors. Services raise these; ``api/errors.py`` turns them into
RFC 9457 problem documents in one place.

    DsaError                      500  internal (never shown with a trace)
    ├── NotFound                  404  dataset_not_found, ref_not_found, job_not_found, ...
    ├── Conflict                  409  dataset_exists, ref_conflict, ...
    ├── Invalid                   422  invalid_request, invalid_file, ...
    │   └── BadRequest            400  bad_request
    ├── Unauthorized              401  unauthorized
    ├── Forbidden                 403  forbidden
    ├── TooLarge                  413  too_large
    ├── UnsupportedMedia          415  unsupported_media_type
    └── Unavailable               503  unavailable

Each error has a stable ``code`` (the last part of the problem ``type``),
a human ``detail`` and optional ``extra`` members (``line``, ``column``,
``errors`` ...) copied into the problem document.

Every stable code is a class (decision 0018): a feature's codes live in its
``errors.py`` (``features/datasets/errors.py: DatasetNotFound(NotFound)``,
``default_code = "dataset_not_found"``), the few codes core raises itself at
the end of this module. Services raise those classes; callers catch them by
class and never compare ``code`` strings. A class takes its status and title
from its category; a code used by several features belongs to the feature
that owns the concept (``TableNotFound`` in ``features/data``). The ``code=``
keyword still overrides the class's code for callers not yet converted.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DsaError(Exception):
    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    default_code: ClassVar[str] = "internal"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or self.default_code
        self.extra = extra

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        problem: dict[str, Any] = {
            "type": f"https://dsa.dev/problems/{self.code.replace('_', '-')}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            problem["instance"] = instance
        problem.update(self.extra)
        return problem


class NotFound(DsaError):
    status = 404
    title = "Not found"
    default_code = "not_found"


class Conflict(DsaError):
    status = 409
    title = "Conflict"
    default_code = "conflict"


class Invalid(DsaError):
    status = 422
    title = "Invalid input"
    default_code = "invalid"


class BadRequest(Invalid):
    status = 400
    title = "Bad request"
    default_code = "bad_request"


class Unauthorized(DsaError):
    status = 401
    title = "Unauthorized"
    default_code = "unauthorized"


class Forbidden(DsaError):
    status = 403
    title = "Forbidden"
    default_code = "forbidden"


class TooLarge(DsaError):
    status = 413
    title = "Content too large"
    default_code = "too_large"


class UnsupportedMedia(DsaError):
    status = 415
    title = "Unsupported media type"
    default_code = "unsupported_media_type"


class TooManyRequests(DsaError):
    """429: a rate limit or a bound on concurrent work; ``retry_after``
    (whole seconds) becomes the ``Retry-After`` header."""

    status = 429
    title = "Too many requests"
    default_code = "too_many_requests"

    def __init__(self, detail: str, *, retry_after: int = 1, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after = max(1, int(retry_after))


class Unavailable(DsaError):
    status = 503
    title = "Service unavailable"
    default_code = "unavailable"


# Codes core raises itself (its modules have no feature to own them).


class InvalidRequest(Invalid):
    """A request that fails validation; ``errors`` lists every problem."""

    default_code = "invalid_request"


class DeadlineExceeded(Unavailable):
    """An expensive read ran past ``DSA_EXPENSIVE_DEADLINE_S`` (``core.deadline``)."""

    default_code = "deadline_exceeded"


class StoredObjectError(DsaError):
    """An object the metadata refers to is damaged (unreadable): the server's
    fault, never the caller's, so a 500-class problem naming the object,
    logged, rather than an answer read from what is left."""

    status = 500
    title = "Stored data is damaged"
    default_code = "object_damaged"


class ObjectNotFound(StoredObjectError):
    """An object missing from the object store (a 500 too: every read goes
    through metadata that names it, so its absence is damage)."""

    default_code = "object_not_found"


class UnknownType(Invalid):
    """A logical column type this version does not know."""

    default_code = "unknown_type"


class BadValue(Invalid):
    """A value a column's type cannot hold where the row encoding meets it
    (a nested date past year 9999 …): the import fails naming the column."""

    default_code = "bad_value"


class DatabaseNotConfigured(Unavailable):
    default_code = "database_not_configured"


class ObjectStoreUnavailable(Unavailable):
    """The object store did not answer (unreachable, denied, no such bucket)."""

    default_code = "object_store_unavailable"

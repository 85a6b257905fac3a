"""The web shell's errors."""

from __future__ import annotations

from core.errors import Forbidden


class CsrfFailed(Forbidden):
    """A cookie-authenticated write without the session's CSRF token."""

    default_code = "csrf_failed"

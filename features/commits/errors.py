"""History's problem codes (see core/errors.py for the tree and the rules)."""

from __future__ import annotations

from core.errors import NotFound


class CommitNotFound(NotFound):
    default_code = "commit_not_found"

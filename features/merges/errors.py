"""The merges feature's errors."""

from __future__ import annotations

from core.errors import Conflict, Invalid


class InvalidStrategy(Invalid):
    default_code = "invalid_strategy"


class MergeConflict(Conflict):
    """Rows or tables both sides changed differently; ``conflicts`` lists them."""

    default_code = "merge_conflict"


class RevertRoot(Invalid):
    default_code = "revert_root"

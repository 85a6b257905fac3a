"""Integrity's problem codes (see core/errors.py for the tree and the rules)."""

from __future__ import annotations

from core.errors import Conflict, Invalid


class GraceTooShort(Invalid):
    """A gc grace period under the floor without ``force`` (or negative)."""

    default_code = "grace_too_short"


class GcBusy(Conflict):
    """A gc while another gc or an fsck runs, or an fsck while a gc runs."""

    default_code = "gc_busy"


class BackupError(Invalid):
    """A backup directory that cannot be read or restored (``dsa restore``)."""

    default_code = "backup_invalid"


class TargetNotEmpty(Conflict):
    """A restore into an installation that holds datasets."""

    default_code = "restore_target_not_empty"

"""Datasets' problem codes (see core/errors.py for the tree and the rules)."""

from __future__ import annotations

from core.errors import Conflict, Forbidden, Invalid, NotFound


class DatasetNotFound(NotFound):
    """No such dataset, or one the caller may not see (404, not 403)."""

    default_code = "dataset_not_found"


class DatasetExists(Conflict):
    default_code = "dataset_exists"


class RoleRequired(Forbidden):
    """The caller can read the dataset but lacks the role an operation needs."""

    default_code = "role_required"


class InvalidRole(Invalid):
    default_code = "invalid_role"


class PermissionNotFound(NotFound):
    default_code = "permission_not_found"


class LastAdmin(Conflict):
    default_code = "last_admin"


class ConfirmationRequired(Invalid):
    """Deleting a dataset needs its name typed again."""

    default_code = "confirmation_required"

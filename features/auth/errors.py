"""Auth's problem codes (see core/errors.py for the tree and the rules)."""

from __future__ import annotations

from core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized


class WeakPassword(Invalid):
    default_code = "weak_password"


class UserExists(Conflict):
    default_code = "user_exists"


class UserNotFound(NotFound):
    default_code = "user_not_found"


class BadCredentials(Unauthorized):
    """Wrong username or password (the same answer for both)."""

    default_code = "bad_credentials"


class BadToken(Unauthorized):
    """An Authorization header that is not ``Bearer <token>``, or a token
    that is invalid, expired or revoked."""

    default_code = "bad_token"


class TokenNotFound(NotFound):
    default_code = "token_not_found"


class AdminRequired(Forbidden):
    default_code = "admin_required"


class AccountDisabled(Unauthorized):
    default_code = "account_disabled"


class ScopeExceeded(Forbidden):
    """A token used, or minting a token, beyond its scopes or datasets."""

    default_code = "token_scope"


class LastInstallationAdmin(Conflict):
    default_code = "last_installation_admin"

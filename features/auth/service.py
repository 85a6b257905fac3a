"""Users, passwords (Argon2), access tokens (JWT), API tokens and their scopes.

``current_user`` / ``optional_user`` are the FastAPI dependencies every
other feature uses to learn who is calling. Every credential is checked
against the database on each use (decision 0026): a disabled user, a changed
password (``token_version``) or a signed-out session (``revoked_session``)
stops working at once, and whether the caller is an administrator is read
from the user's row, never from the token.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError, VerifyMismatchError
from fastapi import Request

from core import audit, db, ratelimit
from core.config import get_settings
from core.errors import TooManyRequests, Unauthorized
from features.auth.devices import DEVICE_COOKIE as DEVICE_COOKIE
from features.auth.devices import DEVICE_TTL_S as DEVICE_TTL_S
from features.auth.devices import device_nonce
from features.auth.devices import device_token as device_token
from features.auth.devices import set_device_cookie as set_device_cookie
from features.auth.errors import (
    AccountDisabled,
    AdminRequired,
    BadCredentials,
    BadToken,
    LastInstallationAdmin,
    ScopeExceeded,
    TokenNotFound,
    UserExists,
    UserNotFound,
    WeakPassword,
)

Q = db.Queries(__file__)
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("dsa-timing-equaliser")
API_TOKEN_PREFIX = "dsa_"
SCOPES = ("read", "write", "admin")  # each includes the ones before it
_HASH_WAIT_S = 5.0
_hashing: threading.BoundedSemaphore | None = None
_hashing_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class User:
    """Who is calling, and what the credential they used allows.

    ``is_admin`` is the installation's administrator flag as the credential
    carries it: an API token without the ``admin`` scope is not one.
    ``scope`` is the highest dataset role the credential can exercise and
    ``datasets`` (when not None) the only datasets it is for; a session from a
    password login carries everything the user has."""

    id: uuid.UUID
    username: str
    is_admin: bool
    scope: str = "admin"
    datasets: frozenset[uuid.UUID] | None = None
    token_id: uuid.UUID | None = None
    token_expires_at: datetime | None = None
    must_change_password: bool = False

    @property
    def limited(self) -> bool:
        """Whether the credential carries less than the user has."""
        return self.scope != "admin" or self.datasets is not None

    def ceiling(self, dataset_id: uuid.UUID) -> str | None:
        """The highest role this credential may use on ``dataset_id`` (None: it is not for it)."""
        if self.datasets is not None and dataset_id not in self.datasets:
            return None
        return self.scope


def _user(row: dict[str, Any], **limits: Any) -> User:
    return User(
        row["id"],
        row["username"],
        row["is_admin"],
        must_change_password=bool(row.get("must_change_password")),
        **limits,
    )


@contextmanager
def _hash_slot() -> Iterator[None]:
    """One of ``DSA_MAX_CONCURRENT_HASHES`` slots for an Argon2 hash (64 MiB
    each): a flood of logins queues here instead of taking the memory of
    hundreds of hashes at once; after 5 s of waiting the answer is 429."""
    global _hashing
    with _hashing_lock:
        if _hashing is None:
            _hashing = threading.BoundedSemaphore(get_settings().effective_max_concurrent_hashes)
    if not _hashing.acquire(timeout=_HASH_WAIT_S):
        raise TooManyRequests(
            "too many sign-ins are being checked at once; try again shortly", retry_after=2
        )
    try:
        yield
    finally:
        _hashing.release()


def _hash(password: str) -> str:
    with _hash_slot():
        return _hasher.hash(password)


def _verify(password_hash: str, password: str) -> bool:
    with _hash_slot():
        try:
            return _hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError):
            return False


def _check_strength(password: str) -> None:
    if len(password) < 8:
        raise WeakPassword("the password must be at least 8 characters")


def create_user(
    conn: psycopg.Connection[Any],
    *,
    username: str,
    password: str,
    is_admin: bool = False,
    must_change_password: bool = False,
    actor: User | None = None,
) -> User:
    """A new user; ``actor`` (the administrator adding them) goes in the audit log."""
    _check_strength(password)
    try:
        with conn.transaction():
            row = conn.execute(
                Q.insert_user,
                {
                    "id": uuid.uuid4(),
                    "username": username,
                    "password_hash": _hash(password),
                    "is_admin": is_admin,
                    "must_change_password": must_change_password,
                },
            ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise UserExists(f"user {username!r} already exists") from None
    assert row is not None
    audit.record(conn, "user.create", actor=actor, target=username, details={"is_admin": is_admin})
    return _user(row)


def ensure_admin(
    conn: psycopg.Connection[Any], *, username: str, password: str, generated: bool = False
) -> bool:
    """Create the first admin if missing; True when it was created. A
    ``generated`` password must be changed at the first sign-in."""
    if conn.execute(Q.user_by_name, {"username": username}).fetchone():
        return False
    create_user(
        conn, username=username, password=password, is_admin=True, must_change_password=generated
    )
    return True


def authenticate(
    conn: psycopg.Connection[Any],
    *,
    username: str,
    password: str,
    address: str | None = None,
    device: str | None = None,
) -> User:
    """The user, if the password is theirs. Failed attempts are counted per
    username and per client ``address`` (``DSA_RATE_LIMIT_LOGIN_*``); past
    either limit the answer is 429 before any password is checked. With a
    ``device`` token this username signed in with before (``device_token``),
    failures count against that device instead of the whole username: whoever
    fails for a name on purpose cannot lock its owner out of a browser they
    used before (decision 0027)."""
    s = get_settings()
    who = username.casefold()
    nonce = device_nonce(device, who) if device else None
    bucket = ("login-device", nonce) if nonce else ("login-user", who)
    limits = [(s.rate_limit_login_user, *bucket)]
    if address:
        limits.append((s.rate_limit_login_address, "login-address", address))
    # one attempt per bucket at a time, so that each sees the failures
    # before it: the limit is exact however many arrive at once
    with ratelimit.one_at_a_time("login", *bucket, what="sign-in for this user"):
        for rule, *key in limits:
            if rule:
                ratelimit.check(rule, *key, what="failed sign-ins")
        row = conn.execute(Q.user_by_name, {"username": username}).fetchone()
        if not _verify(row["password_hash"] if row else _DUMMY_HASH, password) or row is None:
            for rule, *key in limits:
                if rule:
                    ratelimit.count(rule, *key)
            audit.record_alone("auth.login_failed", actor=None, target=username, outcome="denied")
            raise BadCredentials("wrong username or password")
    if row["disabled"]:
        audit.record_alone(
            "auth.login_failed",
            actor=None,
            target=username,
            outcome="denied",
            details={"reason": "disabled"},
        )
        raise AccountDisabled("this account is disabled; ask an administrator")
    user = _user(row)
    audit.record(conn, "auth.login", actor=user)
    return user


def issue_access_token(user: User) -> tuple[str, int]:
    """A JWT for ``user``'s session: it names the user, the password's
    generation (``ver``) and itself (``jti``, for signing out); nothing in it
    grants anything without the user's row agreeing."""
    s = get_settings()
    now = int(time.time())
    with db.transaction() as conn:  # the primary: a replica may not have the new version yet
        ver = conn.execute(
            "SELECT token_version FROM app_user WHERE id = %(id)s", {"id": user.id}
        ).fetchone()
    claims = {
        "sub": str(user.id),
        "ver": ver["token_version"] if ver else -1,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "exp": now + s.jwt_ttl_seconds,
    }
    return jwt.encode(claims, s.key("jwt"), algorithm="HS256"), s.jwt_ttl_seconds


def decode_access_token(token: str) -> dict[str, Any] | None:
    """The claims of a well-signed, unexpired access token (no database), or None."""
    try:
        claims = jwt.decode(
            token,
            get_settings().key("jwt"),
            algorithms=["HS256"],
            options={"require": ["sub", "ver", "jti", "exp"]},
        )
        uuid.UUID(claims["sub"]), uuid.UUID(claims["jti"]), int(claims["ver"])
    except (jwt.PyJWTError, KeyError, ValueError, TypeError):
        return None
    return claims


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(
    conn: psycopg.Connection[Any],
    user: User,
    *,
    name: str,
    expires_in_days: int | None,
    scopes: Sequence[str] | None = None,
    datasets: Sequence[uuid.UUID] | None = None,
) -> dict[str, Any]:
    """A new API token for ``user``. Made with an API token, it can carry no
    more than that token: no higher scope, no other datasets, no later expiry
    (unspecified, they are the parent's)."""
    top = max((SCOPES.index(s) for s in scopes), default=None) if scopes else None
    scope = SCOPES[top] if top is not None else user.scope
    if SCOPES.index(scope) > SCOPES.index(user.scope):
        raise ScopeExceeded(f"this token cannot make a token with the {scope!r} scope")
    wanted = frozenset(datasets) if datasets is not None else user.datasets
    if user.datasets is not None and (wanted is None or not wanted <= user.datasets):
        raise ScopeExceeded("this token cannot make a token for datasets it is not for")
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    if user.token_id is not None and user.token_expires_at is not None:
        if expires is None:
            expires = user.token_expires_at
        elif expires > user.token_expires_at:
            raise ScopeExceeded("a token cannot make a token that outlives it")
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        Q.insert_token,
        {
            "id": uuid.uuid4(),
            "user_id": user.id,
            "name": name,
            "token_hash": _token_hash(token),
            "expires_at": expires,
            "scopes": list(SCOPES[: SCOPES.index(scope) + 1]),
            "datasets": sorted(wanted) if wanted is not None else None,
            "parent_id": user.token_id,  # revoked with it
        },
    ).fetchone()
    assert row is not None
    audit.record(
        conn,
        "token.create",
        actor=user,
        target=name,
        details={
            "token_id": str(row["id"]),
            "scopes": row["scopes"],
            "by_token": bool(user.token_id),
        },
    )
    return {**row, "token": token}


def list_api_tokens(conn: psycopg.Connection[Any], user: User) -> list[dict[str, Any]]:
    return conn.execute(Q.tokens_of_user, {"user_id": user.id}).fetchall()


def delete_api_token(conn: psycopg.Connection[Any], user: User, token_id: uuid.UUID) -> None:
    """Revoke one of ``user``'s tokens, and every token made with it (at any
    depth); a limited token may revoke only itself (and so its own)."""
    if user.limited and token_id != user.token_id:
        raise ScopeExceeded("a token limited in scope or datasets may revoke only itself")
    gone = [r["id"] for r in conn.execute(Q.delete_token, {"id": token_id, "user_id": user.id})]
    if not gone:
        raise TokenNotFound("no such token")
    details: dict[str, Any] = {"token_id": str(token_id)}
    if len(gone) > 1:
        details["made_with_it"] = sorted(str(t) for t in gone if t != token_id)
    audit.record(conn, "token.revoke", actor=user, details=details)


def user_from_bearer(token: str) -> User:
    """The caller a bearer token stands for: 401 when it no longer does."""
    if token.startswith(API_TOKEN_PREFIX):
        with db.read() as conn:  # the primary, one round trip (no BEGIN/COMMIT)
            row = conn.execute(Q.user_by_token, {"token_hash": _token_hash(token)}).fetchone()
        if row is None:
            raise BadToken("the API token is unknown, expired or revoked")
        top = max(SCOPES.index(s) for s in row["scopes"])
        # an installation administrator only with every scope and every dataset
        whole = SCOPES[top] == "admin" and row["datasets"] is None
        return _user(
            {**row, "is_admin": row["is_admin"] and whole},
            scope=SCOPES[top],
            datasets=frozenset(row["datasets"]) if row["datasets"] is not None else None,
            token_id=row["token_id"],
            token_expires_at=row["expires_at"],
        )
    claims = decode_access_token(token)
    user = user_from_claims(claims) if claims else None
    if user is None:
        raise BadToken("the access token is invalid, expired or signed out")
    return user


def user_from_claims(claims: dict[str, Any]) -> User | None:
    """The user a decoded access token stands for, if it still does."""
    with db.read() as conn:  # the primary, one round trip (no BEGIN/COMMIT)
        row = conn.execute(
            Q.session_user,
            {"id": uuid.UUID(claims["sub"]), "ver": int(claims["ver"]), "jti": claims["jti"]},
        ).fetchone()
    return _user(row) if row else None


def sign_out(token: str, actor: User | None = None) -> None:
    """Void one access token before it expires (a session's sign-out)."""
    claims = decode_access_token(token)
    if claims is None:
        return
    with db.transaction() as conn:
        audit.record(conn, "auth.logout", actor=actor)
        conn.execute(Q.forget_expired_sessions)
        conn.execute(
            Q.revoke_session,
            {"jti": claims["jti"], "expires_at": datetime.fromtimestamp(claims["exp"], UTC)},
        )


def change_password(
    conn: psycopg.Connection[Any], user: User, *, current_password: str, new_password: str
) -> None:
    """Set ``user``'s password after checking the current one; every access
    token issued before stops working (API tokens stay: revoke them apart).
    Not with a token limited in scope or datasets, and wrong guesses count
    against the sign-in limit of the username (no guessing by this door)."""
    require_unlimited(user, "changing the password")
    rule = get_settings().rate_limit_login_user
    key = ("login-user", user.username.casefold())
    with ratelimit.one_at_a_time("login", user.username.casefold(), what="sign-in for this user"):
        if rule:
            ratelimit.check(rule, *key, what="failed password checks")
        row = conn.execute(Q.password_of, {"id": user.id}).fetchone()
        if row is None or not _verify(row["password_hash"], current_password):
            if rule:
                ratelimit.count(rule, *key)
            raise BadCredentials("the current password is wrong")
    _check_strength(new_password)
    if new_password == current_password:
        raise WeakPassword("the new password must differ from the current one")
    conn.execute(Q.set_password, {"id": user.id, "password_hash": _hash(new_password)})
    audit.record(conn, "user.password_change", actor=user, target=user.username)


def list_users(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    return conn.execute(Q.list_users).fetchall()


def update_user(
    conn: psycopg.Connection[Any],
    username: str,
    *,
    is_admin: bool | None = None,
    disabled: bool | None = None,
    actor: User | None = None,
) -> dict[str, Any]:
    """Grant or take administrator rights, disable or enable a user; 409
    when it would leave the installation without an enabled administrator."""
    with conn.transaction():
        admins = {r["id"] for r in conn.execute(Q.lock_admins).fetchall()}
        row = conn.execute(
            Q.update_user, {"username": username, "is_admin": is_admin, "disabled": disabled}
        ).fetchone()
        if row is None:
            raise UserNotFound(f"user {username!r} does not exist")
        if row["id"] in admins and (not row["is_admin"] or row["disabled"]) and len(admins) == 1:
            raise LastInstallationAdmin(
                "this is the last enabled administrator; make another one first"
            )
        changes = {
            k: v for k, v in (("is_admin", is_admin), ("disabled", disabled)) if v is not None
        }
        audit.record(conn, "user.update", actor=actor, target=username, details=changes)
    return row


def optional_user(request: Request) -> User | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        return None
    if scheme.lower() != "bearer" or not token:
        raise BadToken("use 'Authorization: Bearer <token>'")
    user = user_from_bearer(token.strip())
    request.state.user_id = str(user.id)  # for the access log
    return user


def current_user(request: Request) -> User:
    user = optional_user(request)
    if user is None:
        raise Unauthorized("sign in first: send 'Authorization: Bearer <token>'")
    return user


def require_admin(user: User) -> None:
    if not user.is_admin:
        raise AdminRequired("only administrators may do this")


def require_unlimited(user: User, what: str) -> None:
    """403 for a credential limited in scope or datasets doing ``what``
    (creating a dataset, say), which needs everything the user has."""
    if user.limited:
        raise ScopeExceeded(f"this token's scopes do not allow {what}")


def user_by_name(conn: psycopg.Connection[Any], username: str) -> User:
    row = conn.execute(Q.user_by_name, {"username": username}).fetchone()
    if row is None:
        raise UserNotFound(f"user {username!r} does not exist")
    return _user(row)


def usernames(conn: psycopg.Connection[Any], ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The usernames of these users (disabled ones too), by id, in one query."""
    if not ids:
        return {}
    return {r["id"]: r["username"] for r in conn.execute(Q.usernames, {"ids": ids}).fetchall()}


def user_by_id(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> User | None:
    """The user with this id, unless gone or disabled."""
    row = conn.execute(Q.user_by_id, {"id": user_id}).fetchone()
    return _user(row) if row else None

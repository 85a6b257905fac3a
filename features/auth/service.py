"""Users, passwords (Argon2), JWT access tokens and API tokens.

``current_user`` / ``optional_user`` are the FastAPI dependencies every
other feature uses to learn who is calling.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import VerificationError, VerifyMismatchError
from fastapi import Request

from core import db
from core.config import get_settings
from core.errors import Unauthorized
from features.auth.errors import (
    AdminRequired,
    BadCredentials,
    BadToken,
    TokenNotFound,
    UserExists,
    UserNotFound,
    WeakPassword,
)

Q = db.Queries(__file__)
_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("dsa-timing-equaliser")
API_TOKEN_PREFIX = "dsa_"


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    username: str
    is_admin: bool


def create_user(
    conn: psycopg.Connection[Any], *, username: str, password: str, is_admin: bool = False
) -> User:
    if len(password) < 8:
        raise WeakPassword("the password must be at least 8 characters")
    try:
        with conn.transaction():
            row = conn.execute(
                Q.insert_user,
                {
                    "id": uuid.uuid4(),
                    "username": username,
                    "password_hash": _hasher.hash(password),
                    "is_admin": is_admin,
                },
            ).fetchone()
    except psycopg.errors.UniqueViolation:
        raise UserExists(f"user {username!r} already exists") from None
    assert row is not None
    return User(row["id"], row["username"], row["is_admin"])


def ensure_admin(conn: psycopg.Connection[Any], *, username: str, password: str) -> bool:
    """Create the first admin if missing; True when it was created."""
    if conn.execute(Q.user_by_name, {"username": username}).fetchone():
        return False
    create_user(conn, username=username, password=password, is_admin=True)
    return True


def authenticate(conn: psycopg.Connection[Any], *, username: str, password: str) -> User:
    row = conn.execute(Q.user_by_name, {"username": username}).fetchone()
    try:
        _hasher.verify(row["password_hash"] if row else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError):
        row = None
    if row is None:
        raise BadCredentials("wrong username or password")
    return User(row["id"], row["username"], row["is_admin"])


def issue_access_token(user: User) -> tuple[str, int]:
    s = get_settings()
    now = int(time.time())
    claims = {
        "sub": str(user.id),
        "name": user.username,
        "adm": user.is_admin,
        "iat": now,
        "exp": now + s.jwt_ttl_seconds,
    }
    return jwt.encode(claims, s.effective_jwt_secret(), algorithm="HS256"), s.jwt_ttl_seconds


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(
    conn: psycopg.Connection[Any], user: User, *, name: str, expires_in_days: int | None
) -> dict[str, Any]:
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    row = conn.execute(
        Q.insert_token,
        {
            "id": uuid.uuid4(),
            "user_id": user.id,
            "name": name,
            "token_hash": _token_hash(token),
            "expires_at": expires,
        },
    ).fetchone()
    assert row is not None
    return {**row, "token": token}


def list_api_tokens(conn: psycopg.Connection[Any], user: User) -> list[dict[str, Any]]:
    return conn.execute(Q.tokens_of_user, {"user_id": user.id}).fetchall()


def delete_api_token(conn: psycopg.Connection[Any], user: User, token_id: uuid.UUID) -> None:
    if conn.execute(Q.delete_token, {"id": token_id, "user_id": user.id}).rowcount == 0:
        raise TokenNotFound("no such token")


def user_from_bearer(token: str) -> User:
    if token.startswith(API_TOKEN_PREFIX):
        with db.transaction() as conn:
            row = conn.execute(Q.user_by_token, {"token_hash": _token_hash(token)}).fetchone()
        if row is None:
            raise BadToken("the API token is unknown or expired")
        return User(row["id"], row["username"], row["is_admin"])
    try:
        claims = jwt.decode(token, get_settings().effective_jwt_secret(), algorithms=["HS256"])
        return User(uuid.UUID(claims["sub"]), claims["name"], bool(claims["adm"]))
    except (jwt.PyJWTError, KeyError, ValueError):
        raise BadToken("the access token is invalid or expired") from None


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


def user_by_name(conn: psycopg.Connection[Any], username: str) -> User:
    row = conn.execute(Q.user_by_name, {"username": username}).fetchone()
    if row is None:
        raise UserNotFound(f"user {username!r} does not exist")
    return User(row["id"], row["username"], row["is_admin"])


def user_by_id(conn: psycopg.Connection[Any], user_id: uuid.UUID) -> User | None:
    row = conn.execute(Q.user_by_id, {"id": user_id}).fetchone()
    return User(row["id"], row["username"], row["is_admin"]) if row else None

"""Device tokens: a browser that signed in as a name keeps its own failure count (decision 0027)."""

from __future__ import annotations

import hashlib
import secrets

from starlette.responses import Response

from core.config import get_settings

__all__ = ["DEVICE_COOKIE", "DEVICE_TTL_S", "device_nonce", "device_token", "set_device_cookie"]

DEVICE_COOKIE = "dsa_device"
DEVICE_TTL_S = 180 * 86_400


def device_token(username: str) -> str:
    """A token a browser (or client) keeps after signing in as ``username``:
    a random id and a MAC binding it to the name. It grants nothing; it only
    gives later sign-ins of that name from there their own failure count."""
    nonce = secrets.token_urlsafe(12)
    return f"{nonce}.{_device_mac(nonce, username.casefold())}"


def set_device_cookie(response: Response, username: str, *, secure: bool) -> None:
    """Set a fresh device token for ``username`` on ``response`` (HttpOnly, 180 days)."""
    response.set_cookie(
        DEVICE_COOKIE,
        device_token(username),
        max_age=DEVICE_TTL_S,
        httponly=True,
        samesite="lax",
        secure=secure,
    )


def device_nonce(token: str, username: str) -> str | None:
    nonce, _, mac = token.partition(".")
    if not nonce or len(token) > 200:
        return None
    return nonce if secrets.compare_digest(mac, _device_mac(nonce, username)) else None


def _device_mac(nonce: str, username: str) -> str:
    msg = f"{nonce}\n{username}".encode()
    return hashlib.blake2b(msg, key=get_settings().key("device"), digest_size=16).hexdigest()

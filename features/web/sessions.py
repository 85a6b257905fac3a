"""The browser session: one cookie, CSRF, sign-in and sign-out, the current user.

One cookie, ``dsa_session`` (HttpOnly, SameSite=Lax, Secure over https),
holds ``<sid>`` for a visitor or ``<sid>.<jwt>`` once signed in: the session
id is random, the JWT is the same access token ``POST /api/v1/auth/login``
issues (so it expires the same way), read and issued through auth's
service. Signing in rotates the session id. A visitor gets a session id on
the first request (``SessionMiddleware``), so the sign-in form is protected
too.

CSRF. The token is ``HMAC(csrf key, sid)`` (the key is derived for this
purpose alone, ``Settings.key``): every form carries it as
the hidden field ``csrf``, htmx and fetch send it as ``X-CSRF-Token``; every
state-changing UI request checks it (``check_csrf``). The middleware lets
``/api/`` requests use the cookie too (the upload page's progress stream
reads ``GET /api/v1/jobs/{id}/events``): it turns the cookie into an
``Authorization`` header, and refuses unsafe methods with 403 unless the
request carries the CSRF header. Bearer calls are left alone.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from http.cookies import SimpleCookie

from fastapi import Request, Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.config import get_settings
from core.errors import DsaError
from features.auth import service as auth_service
from features.auth.service import User
from features.web.errors import CsrfFailed

COOKIE = "dsa_session"
CSRF_HEADER = "x-csrf-token"
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(slots=True)
class Session:
    """A visitor's session id and, once signed in, their access token (whose
    signature and expiry the middleware checked without the database). The
    user is looked up on first use, in the handler's thread: a token signed
    out, of a disabled user or from before a password change has none."""

    sid: str
    token: str | None
    _user: User | None = None
    _resolved: bool = False

    @property
    def user(self) -> User | None:
        if not self._resolved:
            claims = auth_service.decode_access_token(self.token) if self.token else None
            self._user = auth_service.user_from_claims(claims) if claims else None
            self._resolved = True
        return self._user

    @property
    def known_user(self) -> User | None:
        """The user if already looked up (never queries: safe in async code)."""
        return self._user

    @property
    def csrf(self) -> str:
        return csrf_token(self.sid)


def csrf_token(sid: str) -> str:
    return hmac.new(get_settings().key("csrf"), sid.encode(), hashlib.sha256).hexdigest()


def _parse_cookie(value: str | None) -> Session | None:
    if not value:
        return None
    sid, _, token = value.partition(".")
    if len(sid) < 16 or not sid.replace("-", "").replace("_", "").isalnum():
        return None
    if token and auth_service.decode_access_token(token) is None:
        token = ""  # expired or not ours: a visitor
    return Session(sid, token or None)


def _new_sid() -> str:
    return secrets.token_urlsafe(24)


def _cookie_header(value: str, *, secure: bool, max_age: int | None, name: str = COOKIE) -> str:
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def session(request: Request) -> Session:
    """The request's session (the middleware made sure there is one)."""
    s = request.scope.get("dsa_session")
    if isinstance(s, Session):
        return s
    return _parse_cookie(request.cookies.get(COOKIE)) or Session(_new_sid(), None)


def current_user(request: Request) -> User | None:
    return session(request).user


class SignInRequired(Exception):
    """Raised by ``require_user``; the UI route class redirects to the sign-in page."""


def require_user(request: Request) -> User:
    user = current_user(request)
    if user is None:
        raise SignInRequired()
    return user


def remember_device(request: Request, response: Response, user: User) -> None:
    """The device cookie of a successful sign-in (``auth_service.device_token``):
    this browser's later sign-ins of that name keep their own failure count."""
    auth_service.set_device_cookie(response, user.username, secure=_secure(request.scope))


def sign_in(request: Request, response: Response, user: User) -> None:
    token, ttl = auth_service.issue_access_token(user)
    sid = _new_sid()  # a new session id on sign-in: no session fixation
    response.headers.append(
        "set-cookie",
        _cookie_header(f"{sid}.{token}", secure=_secure(request.scope), max_age=ttl),
    )


def sign_out(request: Request, response: Response) -> None:
    """Replace the cookie and void its access token, which a copy of the
    cookie could otherwise keep using until it expires."""
    s = session(request)
    if s.token:
        auth_service.sign_out(s.token, actor=s.user)
    response.headers.append(
        "set-cookie", _cookie_header(_new_sid(), secure=_secure(request.scope), max_age=None)
    )


def _secure(scope: Scope) -> bool:
    """Cookies carry ``Secure`` when ``DSA_COOKIE_SECURE`` says so, or (unset)
    when the request came over https: directly, or through a proxy in
    ``DSA_TRUSTED_PROXIES`` that said so (``X-Forwarded-Proto``)."""
    return get_settings().secure_cookies(str(scope.get("scheme", "")))


def check_csrf(request: Request, form_token: str | None) -> None:
    """403 unless the form field or the X-CSRF-Token header carries the session's token."""
    given = form_token or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(given.encode(), session(request).csrf.encode()):
        raise CsrfFailed(
            "the form's security token is missing or stale; reload the page and try again"
        )


class SessionMiddleware:
    """Gives every visitor a session id; lets ``/api/`` use the cookie (with CSRF)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/static/") or path in ("/healthz", "/readyz", "/metrics"):
            await self.app(scope, receive, send)
            return
        sess = _parse_cookie(_cookie_value(scope))
        if path.startswith("/api/"):
            await self._api(scope, receive, send, sess)
            return
        fresh = sess is None
        if sess is None:
            sess = Session(_new_sid(), None)
        scope["dsa_session"] = sess
        if not fresh:
            await self.app(scope, receive, send)
            return
        sid = sess.sid

        async def _send(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                if not any(v.startswith(f"{COOKIE}=") for v in out.getlist("set-cookie")):
                    out.append(
                        "set-cookie", _cookie_header(sid, secure=_secure(scope), max_age=None)
                    )
            await send(message)

        await self.app(scope, receive, _send)

    async def _api(self, scope: Scope, receive: Receive, send: Send, sess: Session | None) -> None:
        """A REST call: a signed-in cookie stands for a Bearer token (unsafe methods need CSRF)."""
        headers = MutableHeaders(scope=scope)
        if sess is not None and sess.token and "authorization" not in headers:
            if scope["method"] in _UNSAFE and not hmac.compare_digest(
                headers.get(CSRF_HEADER, "").encode(), sess.csrf.encode()
            ):
                await _problem(
                    send,
                    CsrfFailed("cookie-authenticated requests need the X-CSRF-Token header"),
                )
                return
            headers["authorization"] = f"Bearer {sess.token}"
        await self.app(scope, receive, send)


def session_token(scope: Scope) -> str | None:
    """The access token in the request's session cookie, if any (unchecked)."""
    value = _cookie_value(scope)
    return value.partition(".")[2] or None if value else None


def _cookie_value(scope: Scope) -> str | None:
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(MutableHeaders(scope=scope).get("cookie", ""))
    except Exception:  # a malformed Cookie header: as if there were none
        cookie = SimpleCookie()
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel else None


async def _problem(send: Send, err: DsaError) -> None:
    body = json.dumps(err.to_problem()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": err.status,
            "headers": [(b"content-type", b"application/problem+json")],
        }
    )
    await send({"type": "http.response.body", "body": body})

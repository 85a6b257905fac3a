"""Per-request rate limits (``core.ratelimit``'s rules), before any handler runs.

Who a request counts against:
- a well-signed access token (Bearer or the session cookie): its user, under
  ``DSA_RATE_LIMIT_USER``; the signature is checked here without the
  database, so forged tokens cannot mint fresh counters;
- an API token: that token, under the same rule; and since it can only be
  verified against the database, its client address must not be over the
  anonymous rule, and a token the app refuses (401) counts against the
  address;
- anything else: the client address (after ``DSA_TRUSTED_PROXIES``), under
  ``DSA_RATE_LIMIT_ANONYMOUS``.

Expensive requests (compare, merge bases, filtered or sorted pages, exports)
count ``EXPENSIVE_COST``; anonymous ones also wait for one of
``DSA_ANONYMOUS_EXPENSIVE_CONCURRENCY`` slots per API process (default half
the cores), or get 429 at
once: a crowd of anonymous clients cannot take the cores signed-in users
need. The service endpoints and static files are not limited.
"""

from __future__ import annotations

import hashlib
import html
import json
import re

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core import ratelimit
from core.config import get_settings
from core.errors import TooManyRequests
from features.auth import service as auth_service
from features.web import service as web_service

_EXEMPT = ("/static/", "/healthz", "/readyz", "/metrics")
_EXPENSIVE_PATH = re.compile(r"/(compare|merge-base)/|/export$")
_EXPENSIVE_QUERY = re.compile(rb"(^|&)(filter|sort)=")


def _credential(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return web_service.session_token(scope)


def expensive(scope: Scope) -> bool:
    """Whether a request may take seconds of a core: a compare, a merge
    base, a filtered or sorted page, an export."""
    return bool(
        _EXPENSIVE_PATH.search(scope["path"])
        or _EXPENSIVE_QUERY.search(scope.get("query_string", b""))
    )


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._anonymous_expensive = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(_EXEMPT) or path in _EXEMPT:
            await self.app(scope, receive, send)
            return
        s = get_settings()
        client = scope.get("client")
        address = client[0] if client else "unknown"
        token = _credential(scope)
        heavy = expensive(scope)
        cost = ratelimit.EXPENSIVE_COST if heavy else 1
        claims = auth_service.decode_access_token(token) if token else None
        api_token = bool(token and token.startswith(auth_service.API_TOKEN_PREFIX))
        try:
            if claims is not None and s.rate_limit_user:
                await _hit(s.rate_limit_user, "user", claims["sub"], cost=cost)
            elif api_token and s.rate_limit_user:
                if s.rate_limit_anonymous:
                    await anyio.to_thread.run_sync(
                        lambda: ratelimit.check(s.rate_limit_anonymous, "address", address)
                    )
                digest = hashlib.sha256(token.encode()).hexdigest()[:32]  # type: ignore[union-attr]
                await _hit(s.rate_limit_user, "token", digest, cost=cost)
            elif claims is None and not api_token and s.rate_limit_anonymous:
                await _hit(s.rate_limit_anonymous, "address", address, cost=cost)
        except TooManyRequests as err:
            await _refuse(scope, send, err)
            return
        anonymous = claims is None and not api_token
        if heavy and anonymous:
            if self._anonymous_expensive >= s.effective_anonymous_expensive_concurrency:
                await _refuse(
                    scope,
                    send,
                    TooManyRequests(
                        "the server is busy with other anonymous requests like this one; "
                        "sign in, or try again shortly",
                        retry_after=1,
                    ),
                )
                return
            self._anonymous_expensive += 1
        refused = False

        async def _send(message: Message) -> None:
            nonlocal refused
            if message["type"] == "http.response.start" and message["status"] == 401:
                refused = True
            await send(message)

        try:
            await self.app(scope, receive, _send if api_token else send)
        finally:
            if heavy and anonymous:
                self._anonymous_expensive -= 1
            if refused and s.rate_limit_anonymous:
                rule = s.rate_limit_anonymous
                await anyio.to_thread.run_sync(lambda: ratelimit.count(rule, "address", address))


async def _hit(rule: str, *key: str, cost: int) -> None:
    await anyio.to_thread.run_sync(lambda: ratelimit.hit(rule, *key, cost=cost))


async def _refuse(scope: Scope, send: Send, err: TooManyRequests) -> None:
    """429 with ``Retry-After``: a problem document, or a short page for the web UI's pages."""
    path: str = scope["path"]
    accept = dict(scope.get("headers", ())).get(b"accept", b"")
    page = not path.startswith("/api/") and b"text/html" in accept
    if page:
        body = (
            "<!doctype html><title>Too many requests</title><h1>Too many requests</h1>"
            f"<p>{html.escape(err.detail)}</p><p>Try again in {err.retry_after} s.</p>"
        ).encode()
        ctype = b"text/html; charset=utf-8"
    else:
        body = json.dumps(err.to_problem(instance=path)).encode()
        ctype = b"application/problem+json"
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", ctype),
                (b"retry-after", str(err.retry_after).encode()),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})

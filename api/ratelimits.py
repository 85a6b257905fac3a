"""Per-request rate limits (``core.ratelimit``'s rules), before any handler runs.

Who a request counts against:
- a well-signed access token (Bearer or the session cookie): its user, under
  ``DSA_RATE_LIMIT_USER``; the signature is checked here without the
  database, so forged tokens cannot mint fresh counters;
- a working API token (Bearer only): its user, under the same rule (looked
  up, remembered 30 s): all of a user's tokens share one counter;
- a valid signed export link (no token): the user who made it, as above
  (``polars.scan_parquet`` of a link sends dozens of ranged reads);
- anything else, forged and unknown tokens included: the client address
  (after ``DSA_TRUSTED_PROXIES``), under ``DSA_RATE_LIMIT_ANONYMOUS``.

Expensive requests (compare, merge bases, filtered or sorted pages, exports,
statistics and quality reports, which may be computed at the request)
count ``EXPENSIVE_COST`` and take a slot for as long as they run, or get
429 at once:

- ``DSA_EXPENSIVE_CONCURRENCY`` slots per API process (default four per core);
- at most ``DSA_EXPENSIVE_PER_USER`` of them for one user (default half);
- at most ``DSA_ANONYMOUS_EXPENSIVE_CONCURRENCY`` for all anonymous callers
  together (default half the cores): a crowd of anonymous clients cannot
  take the cores signed-in users need.

A HEAD or a ranged read of an export is not expensive: it serves bytes
of the stored file (the one that must store it first is bounded by the
exports service instead).

Each also runs under a deadline, ``DSA_EXPENSIVE_DEADLINE_S`` (``core.deadline``):
past it the work is cancelled and the caller gets 503 ``deadline_exceeded``,
so no slot or thread is held for as long as a query could run. The service
endpoints and static files are not limited.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
import time
from urllib.parse import parse_qsl

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from core import deadline, ratelimit
from core.config import Settings, get_settings
from core.errors import TooManyRequests, Unauthorized
from features.auth import service as auth_service
from features.exports import service as exports_service
from features.web import service as web_service

_EXEMPT = ("/static/", "/healthz", "/readyz", "/metrics")
_EXPENSIVE_PATH = re.compile(r"/(compare|merge-base)/|/(export|stats|quality)$")
_EXPENSIVE_QUERY = re.compile(rb"(^|&)(filter|sort|digest)=")


def _credential(scope: Scope) -> tuple[str | None, bool]:
    """The request's token and whether it came from the session cookie."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return (token.strip() if scheme.lower() == "bearer" else None), False
    return web_service.session_token(scope), True


_API_TOKEN_TTL_S = 30.0
_API_TOKEN_CACHE_MAX = 10_000
_api_tokens: dict[str, tuple[float, str | None]] = {}


def _api_token_user(token: str) -> str | None:
    """The id of the user an API token stands for, None when it stands for
    no one; remembered 30 s (it only chooses whose counter a request uses:
    whether the token still works is the handler's check)."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    now = time.monotonic()
    hit = _api_tokens.get(digest)
    if hit is not None and hit[0] > now:
        return hit[1]
    try:
        user_id: str | None = str(auth_service.user_from_bearer(token).id)
    except Unauthorized:
        user_id = None
    except Exception:  # noqa: BLE001 - the database away: count it as anonymous
        return None
    if len(_api_tokens) >= _API_TOKEN_CACHE_MAX:
        _api_tokens.clear()
    _api_tokens[digest] = (now + _API_TOKEN_TTL_S, user_id)
    return user_id


async def _who(scope: Scope) -> str | None:
    """The user a request's credential stands for, or None (anonymous): a
    well-signed access token's subject (no database), a working API token's
    user (looked up, remembered briefly). A forged, unknown or revoked token,
    or an API token in the cookie (which holds only access tokens), is
    anonymous: it never gets a counter of its own."""
    token, from_cookie = _credential(scope)
    if not token:
        return _link_signer(scope)
    if token.startswith(auth_service.API_TOKEN_PREFIX):
        return None if from_cookie else await anyio.to_thread.run_sync(_api_token_user, token)
    claims = auth_service.decode_access_token(token)
    return str(claims["sub"]) if claims else None


def _link_signer(scope: Scope) -> str | None:
    """The signer of a valid export link (checked without the database)."""
    query = scope.get("query_string", b"")
    if b"sig=" not in query or not scope["path"].endswith("/export"):
        return None
    items = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    signer = exports_service.link_signer(scope["path"], items)
    return str(signer) if signer else None


_PARQUET = re.compile(rb"(^|&)format=parquet(&|$)")


def _ranged(scope: Scope) -> bool:
    """A HEAD, or a ranged read of a Parquet export (other formats stream
    whole whatever the ``Range``)."""
    if scope.get("method") == "HEAD":
        return True
    return bool(_PARQUET.search(scope.get("query_string", b""))) and any(
        name == b"range" for name, _ in scope.get("headers", ())
    )


def expensive(scope: Scope) -> bool:
    """Whether a request may take seconds of a core: a compare, a merge
    base, a filtered or sorted page, a table's digest or statistics, an export
    (not a HEAD or ranged read of one: bytes of its stored file)."""
    path = scope["path"]
    if path.endswith("/export") and _ranged(scope):
        return False
    return bool(
        _EXPENSIVE_PATH.search(path) or _EXPENSIVE_QUERY.search(scope.get("query_string", b""))
    )


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._expensive = 0
        self._anonymous_expensive = 0
        self._by_user: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(_EXEMPT) or path in _EXEMPT:
            await self.app(scope, receive, send)
            return
        s = get_settings()
        client = scope.get("client")
        address = client[0] if client else "unknown"
        heavy = expensive(scope)
        cost = ratelimit.EXPENSIVE_COST if heavy else 1
        user_id = await _who(scope)
        try:
            if user_id is not None and s.rate_limit_user:
                await _hit(s.rate_limit_user, "user", user_id, cost=cost)
            elif user_id is None and s.rate_limit_anonymous:
                await _hit(s.rate_limit_anonymous, "address", address, cost=cost)
        except TooManyRequests as err:
            await _refuse(scope, send, err)
            return
        if not heavy:
            await self.app(scope, receive, send)
            return
        busy = self._take_slot(user_id, s)
        if busy is not None:
            await _refuse(scope, send, TooManyRequests(busy, retry_after=1))
            return
        try:
            with deadline.within(s.expensive_deadline_s):
                await self.app(scope, receive, send)
        finally:
            self._give_back(user_id)

    def _take_slot(self, user_id: str | None, s: Settings) -> str | None:
        """Take an expensive request's slot; why not, when none is free."""
        if self._expensive >= s.effective_expensive_concurrency:
            return "the server is busy with other requests like this one; try again shortly"
        if user_id is None:
            if self._anonymous_expensive >= s.effective_anonymous_expensive_concurrency:
                return (
                    "the server is busy with other anonymous requests like this one; "
                    "sign in, or try again shortly"
                )
            self._anonymous_expensive += 1
        else:
            if self._by_user.get(user_id, 0) >= s.effective_expensive_per_user:
                return (
                    f"you have {self._by_user[user_id]} compares, filtered pages or exports "
                    "running already, the most one user may; try again when one ends"
                )
            self._by_user[user_id] = self._by_user.get(user_id, 0) + 1
        self._expensive += 1
        return None

    def _give_back(self, user_id: str | None) -> None:
        self._expensive -= 1
        if user_id is None:
            self._anonymous_expensive -= 1
        elif self._by_user[user_id] <= 1:
            del self._by_user[user_id]
        else:
            self._by_user[user_id] -= 1


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

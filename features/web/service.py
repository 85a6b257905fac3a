"""The web UI's shell: templates, cookie sessions, CSRF, error pages.

Every feature's ``ui.py`` renders its pages through this module and calls
its own feature's service for the data, exactly as its REST routes do.

Sessions. One cookie, ``dsa_session`` (HttpOnly, SameSite=Lax, Secure over
https), holds ``<sid>`` for a visitor or ``<sid>.<jwt>`` once signed in: the
session id is random, the JWT is the same access token ``POST
/api/v1/auth/login`` issues (so it expires the same way). Signing in rotates
the session id. A visitor gets a session id on the first request
(``SessionMiddleware``), so the sign-in form is protected too.

CSRF. The token is ``HMAC(secret, "csrf" + sid)``: every form carries it as
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
import math
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import structlog
from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from markupsafe import Markup, escape
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.config import get_settings
from core.errors import DsaError, Forbidden, Invalid, NotFound, Unauthorized
from features.auth import service as auth_service
from features.auth.service import User

log = structlog.get_logger(__name__)

COOKIE = "dsa_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
_FEATURES = Path(__file__).resolve().parent.parent
STATIC_DIR = Path(__file__).resolve().parent / "static"
HTMX = "htmx-2.0.4.min.js"


# ---------------------------------------------------------------- sessions


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    token: str | None
    user: User | None

    @property
    def csrf(self) -> str:
        return csrf_token(self.sid)


def csrf_token(sid: str) -> str:
    key = get_settings().effective_jwt_secret().encode()
    return hmac.new(key, b"csrf\0" + sid.encode(), hashlib.sha256).hexdigest()


def _parse_cookie(value: str | None) -> Session | None:
    if not value:
        return None
    sid, _, token = value.partition(".")
    if len(sid) < 16 or not sid.replace("-", "").replace("_", "").isalnum():
        return None
    user = None
    if token:
        try:
            user = auth_service.user_from_bearer(token)
        except Unauthorized:
            token = ""
    return Session(sid, token or None, user)


def _new_sid() -> str:
    return secrets.token_urlsafe(24)


def _cookie_header(value: str, *, secure: bool, max_age: int | None) -> str:
    parts = [f"{COOKIE}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
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
    return _parse_cookie(request.cookies.get(COOKIE)) or Session(_new_sid(), None, None)


def current_user(request: Request) -> User | None:
    return session(request).user


class SignInRequired(Exception):
    """Raised by ``require_user``; the UI route class redirects to the sign-in page."""


def require_user(request: Request) -> User:
    user = current_user(request)
    if user is None:
        raise SignInRequired()
    return user


def sign_in(request: Request, response: Response, user: User) -> None:
    token, ttl = auth_service.issue_access_token(user)
    sid = _new_sid()  # a new session id on sign-in: no session fixation
    response.headers.append(
        "set-cookie",
        _cookie_header(f"{sid}.{token}", secure=_secure(request.scope), max_age=ttl),
    )


def sign_out(request: Request, response: Response) -> None:
    response.headers.append(
        "set-cookie", _cookie_header(_new_sid(), secure=_secure(request.scope), max_age=None)
    )


def _secure(scope: Scope) -> bool:
    return scope.get("scheme") == "https"


def check_csrf(request: Request, form_token: str | None) -> None:
    """403 unless the form field or the X-CSRF-Token header carries the session's token."""
    given = form_token or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(given.encode(), session(request).csrf.encode()):
        raise Forbidden(
            "the form's security token is missing or stale; reload the page and try again",
            code="csrf_failed",
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
        headers = MutableHeaders(scope=scope)
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header: as if there were none
            cookie = SimpleCookie()
        morsel = cookie.get(COOKIE)
        sess = _parse_cookie(morsel.value if morsel else None)
        if path.startswith("/api/"):
            if sess is not None and sess.token and "authorization" not in headers:
                if scope["method"] in _UNSAFE and not hmac.compare_digest(
                    headers.get(CSRF_HEADER, "").encode(), sess.csrf.encode()
                ):
                    await _problem(
                        send,
                        Forbidden(
                            "cookie-authenticated requests need the X-CSRF-Token header",
                            code="csrf_failed",
                        ),
                    )
                    return
                headers["authorization"] = f"Bearer {sess.token}"
            await self.app(scope, receive, send)
            return
        fresh = sess is None
        if sess is None:
            sess = Session(_new_sid(), None, None)
        scope["dsa_session"] = sess

        async def _send(message: Message) -> None:
            if fresh and message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                if not any(v.startswith(f"{COOKIE}=") for v in out.getlist("set-cookie")):
                    out.append(
                        "set-cookie", _cookie_header(sess.sid, secure=_secure(scope), max_age=None)
                    )
            await send(message)

        await self.app(scope, receive, _send)


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


# ---------------------------------------------------------------- templates


def _template_dirs() -> list[str]:
    return [str(p) for p in sorted(_FEATURES.glob("*/templates")) if p.is_dir()]


def _static_version() -> str:
    h = hashlib.blake2b(digest_size=6)
    for p in sorted(STATIC_DIR.iterdir()):
        h.update(p.name.encode())
        h.update(str(p.stat().st_mtime_ns).encode())
    return h.hexdigest()


def short(commit_id: str | None) -> str:
    return (commit_id or "")[:10]


def when(value: Any) -> str:
    """A time for people: '5 minutes ago' or 'in 3 days' within a month, else the date."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    s = (datetime.now(UTC) - value).total_seconds()
    future, s = s < 0, abs(s)
    if s < 45:
        return "just now"
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if s >= n:
            k = int(s // n)
            if unit == "day" and k > 30:
                break
            span = f"{k} {unit}{'s' if k != 1 else ''}"
            return f"in {span}" if future else f"{span} ago"
    return str(value.strftime("%Y-%m-%d"))


def iso(value: Any) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value or "")


def number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def cell_html(value: Any) -> str:
    """One value in a grid, as HTML: null shown as such, empty strings visible.
    The features' fast grid renderers draw every cell with it."""
    if value is None:
        return '<span class="null">null</span>'
    if value == "" and isinstance(value, str):
        return '<span class="null">empty</span>'
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) and math.isfinite(value) else str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return str(escape(str(value)))


def cell(value: Any) -> Markup:
    """The ``cell`` filter: ``cell_html`` for templates."""
    return Markup(cell_html(value))


def url(path: str, **params: Any) -> str:
    """``path`` with the non-empty ``params`` as its query string."""
    q = {k: v for k, v in params.items() if v not in (None, "", [])}
    return path + ("?" + urlencode(q, doseq=True) if q else "")


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_template_dirs()),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.Undefined,
    )
    env.filters.update(short=short, when=when, iso=iso, number=number, cell=cell, q=quote)
    env.globals.update(
        url=url,
        static_version=_static_version(),
        htmx=HTMX,
    )
    return env


_templates: jinja2.Environment | None = None


def templates() -> jinja2.Environment:
    global _templates
    if _templates is None:
        env = _env()
        for name in env.list_templates(extensions=["html"]):
            env.get_template(name)  # compiled once, at start-up, not on a first visitor's time
        _templates = env
    return _templates


def render(request: Request, name: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    sess = session(request)
    html = (
        templates()
        .get_template(name)
        .render(
            request=request,
            user=sess.user,
            csrf=sess.csrf,
            path=request.url.path,
            **ctx,
        )
    )
    return HTMLResponse(
        html,
        status_code=status,
        headers={
            "Cache-Control": "no-store",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "same-origin",
        },
    )


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)


# ---------------------------------------------------------------- errors


def error_page(request: Request, err: DsaError) -> HTMLResponse:
    problem = err.to_problem(instance=request.url.path)
    where = {k: problem[k] for k in ("line", "column", "sheet", "position") if k in problem}
    return render(
        request,
        "web/error.html",
        status=err.status,
        problem=problem,
        where=where,
        errors=problem.get("errors") or [],
    )


class UiRoute(APIRoute):
    """Routes of the web UI: domain errors become HTML error pages (never a trace),
    and a page that needs a user sends visitors to the sign-in page."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except SignInRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return redirect(url("/signin", next=target))
            except DsaError as err:
                if err.status >= 500:
                    log.error("page failed", code=err.code, detail=err.detail)
                return error_page(request, err)
            except RequestValidationError as exc:
                if exc.errors() and all(e.get("loc", ("",))[0] == "path" for e in exc.errors()):
                    # a malformed id in the path (/datasets/nope): no such page
                    return error_page(
                        request,
                        NotFound(f"There is no page at {request.url.path}.", code="not_found"),
                    )
                fields = [
                    {
                        "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
                        "message": e.get("msg", ""),
                    }
                    for e in exc.errors()
                ]
                names = ", ".join(f["field"] for f in fields)
                invalid = Invalid(
                    f"the request is invalid: {names}", code="invalid_request", errors=fields
                )
                return error_page(request, invalid)
            except Exception:
                log.exception("page crashed", path=request.url.path)
                return error_page(
                    request, DsaError("an internal error occurred; it has been logged")
                )
            response.headers["Server-Timing"] = (
                f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
            )
            return response

        return route


def validated(model: Any, data: dict[str, Any]) -> Any:
    """``model`` built from form data; a pydantic error becomes the same 422 the API gives."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        fields = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")}
            for e in exc.errors()
        ]
        names = ", ".join(f["field"] or "(form)" for f in fields)
        raise Invalid(
            f"the form is invalid: {names}", code="invalid_request", errors=fields
        ) from None


def split_list(text: str | None) -> list[str]:
    """``"a, b,,c"`` → ``["a", "b", "c"]``."""
    return [p.strip() for p in (text or "").split(",") if p.strip()]

"""Pages about the visitor's identity: sign in, sign out, and the signed-in
user's API tokens (list, create with the token shown once, revoke).

The token pages call the same service functions as ``POST/GET/DELETE
/api/v1/tokens``; they are the signed-in user's own, so there is no dataset
and no role to check. The browser session itself (cookie, CSRF) is the web
toolkit's (``features.web.service``)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Form, Request, Response

from core.db import read, transaction
from core.errors import DsaError, TooManyRequests, Unauthorized
from features.auth import service
from features.auth.models import ApiTokenCreate
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)
EXPIRY_DAYS = (7, 30, 90, 365)  # the form's choices besides "never"


def _safe_next(target: str | None) -> str:
    """Only local paths: no open redirect through ``next``."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/datasets"


@router.get("/signin")
def signin_form(request: Request, next: str | None = None) -> Response:
    if web.current_user(request) is not None:
        return web.redirect(_safe_next(next))
    return web.render(request, "auth/signin.html", next=_safe_next(next), username="", error=None)


@router.post("/signin")
def signin(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    next: str = Form(""),
    csrf: str = Form(""),
) -> Response:
    web.check_csrf(request, csrf)
    try:
        with transaction() as conn:
            user = service.authenticate(
                conn,
                username=username,
                password=password,
                address=request.client.host if request.client else None,
                device=request.cookies.get(service.DEVICE_COOKIE),
            )
    except (Unauthorized, TooManyRequests) as err:
        page = web.render(
            request,
            "auth/signin.html",
            status=err.status,
            next=_safe_next(next),
            username=username,
            error=err.detail,
        )
        if isinstance(err, TooManyRequests):
            page.headers["Retry-After"] = str(err.retry_after)
        return page
    target = _safe_next(next)
    if user.must_change_password:  # the generated first password: ask for their own now
        target = web.url("/account/password", next=target)
    response = web.redirect(target)
    web.sign_in(request, response, user)
    web.remember_device(request, response, user)
    return response


@router.post("/signout")
def signout(request: Request, csrf: str = Form("")) -> Response:
    web.check_csrf(request, csrf)
    response = web.redirect("/signin")
    web.sign_out(request, response)
    return response


@router.get("/account/tokens")
def tokens_page(request: Request, revoked: str = "") -> Response:
    return _page(request, revoked=revoked)


def _page(
    request: Request,
    *,
    created: dict[str, object] | None = None,
    error: DsaError | None = None,
    form: dict[str, str] | None = None,
    revoked: str = "",
) -> Response:
    user = web.require_user(request)
    with read() as conn:
        tokens = service.list_api_tokens(conn, user)
    return web.render(
        request,
        "auth/tokens.html",
        status=error.status if error else 201 if created else 200,
        tokens=tokens,
        created=created,
        error=error.to_problem() if error else None,
        form=form or {"name": "", "expires_in_days": "90", "scope": "admin"},
        expiry_days=EXPIRY_DAYS,
        revoked=revoked,
    )


@router.post("/account/tokens")
def create(
    request: Request,
    name: str = Form(""),
    expires_in_days: str = Form(""),
    scope: str = Form("admin"),
    csrf: str = Form(""),
) -> Response:
    """Answers with the page itself (not a redirect): the token is shown this
    once and never stored in clear, so it cannot travel through a redirect."""
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    form = {"name": name, "expires_in_days": expires_in_days, "scope": scope}
    try:
        body = web.validated(
            ApiTokenCreate,
            {
                "name": name.strip(),
                "expires_in_days": expires_in_days.strip() or None,
                "scopes": [scope],
            },
        )
        with transaction() as conn:
            row = service.create_api_token(
                conn, user, name=body.name, expires_in_days=body.expires_in_days, scopes=body.scopes
            )
    except DsaError as err:
        if err.status != 422:
            raise
        return _page(request, error=err, form=form)
    return _page(request, created=row)


@router.post("/account/tokens/{token_id}/delete")
def revoke(request: Request, token_id: uuid.UUID, csrf: str = Form("")) -> Response:
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    with transaction() as conn:
        name = next(
            (t["name"] for t in service.list_api_tokens(conn, user) if t["id"] == token_id), ""
        )
        service.delete_api_token(conn, user, token_id)  # 404 when not the user's
    return web.redirect(web.url("/account/tokens", revoked=name or "1"))

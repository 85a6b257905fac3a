"""The signed-in user's API tokens: list, create (the token shown once), revoke.

Same service functions as ``POST/GET/DELETE /api/v1/tokens``; the page is
the signed-in user's own, so there is no dataset and no role to check."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Form, Request, Response

from core.db import read, transaction
from core.errors import DsaError
from features.auth import service
from features.auth.models import ApiTokenCreate
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)
EXPIRY_DAYS = (7, 30, 90, 365)  # the form's choices besides "never"


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
        form=form or {"name": "", "expires_in_days": "90"},
        expiry_days=EXPIRY_DAYS,
        revoked=revoked,
    )


@router.post("/account/tokens")
def create(
    request: Request,
    name: str = Form(""),
    expires_in_days: str = Form(""),
    csrf: str = Form(""),
) -> Response:
    """Answers with the page itself (not a redirect): the token is shown this
    once and never stored in clear, so it cannot travel through a redirect."""
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    form = {"name": name, "expires_in_days": expires_in_days}
    try:
        body = web.validated(
            ApiTokenCreate,
            {"name": name.strip(), "expires_in_days": expires_in_days.strip() or None},
        )
        with transaction() as conn:
            row = service.create_api_token(
                conn, user, name=body.name, expires_in_days=body.expires_in_days
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

"""Account pages: change your password (everyone; the generated first
admin's password must be changed at first sign-in) and, for installation
administrators, the users list (add, disable or enable, grant or take
administrator rights).

They call the same service functions as ``POST /api/v1/users/me/password``,
``GET/POST/PATCH /api/v1/users``."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request, Response

from core.db import read, transaction
from core.errors import DsaError
from features.auth import service
from features.auth.models import PasswordChange, UserCreate
from features.web import service as web

router = APIRouter(route_class=web.UiRoute, include_in_schema=False)


@router.get("/account/password")
def password_page(request: Request, saved: str = "", next: str = "") -> Response:
    web.require_user(request)
    return web.render(request, "auth/password.html", saved=saved, error=None, next=next)


@router.post("/account/password")
def change_password(
    request: Request,
    current_password: str = Form(""),
    new_password: str = Form(""),
    next: str = Form(""),
    csrf: str = Form(""),
) -> Response:
    """Changing the password voids every access token issued before, this
    browser's too: it gets a fresh session in the same answer."""
    user = web.require_user(request)
    web.check_csrf(request, csrf)
    try:
        body = web.validated(
            PasswordChange,
            {"current_password": current_password, "new_password": new_password},
        )
        with transaction() as conn:
            service.change_password(
                conn,
                user,
                current_password=body.current_password,
                new_password=body.new_password,
            )
    except DsaError as err:
        if err.status not in (401, 422):
            raise
        return web.render(
            request,
            "auth/password.html",
            status=err.status,
            saved="",
            error=err.to_problem(),
            next=next,
        )
    target = next if next.startswith("/") and not next.startswith("//") else ""
    response = web.redirect(target or web.url("/account/password", saved="1"))
    web.sign_in(request, response, user)
    return response


def _require_admin(request: Request) -> service.User:
    user = web.require_user(request)
    service.require_admin(user)
    return user


def _users(
    request: Request,
    *,
    error: DsaError | None = None,
    done: str = "",
    form: dict[str, object] | None = None,
) -> Response:
    _require_admin(request)
    with read() as conn:
        users = service.list_users(conn)
    return web.render(
        request,
        "auth/users.html",
        status=error.status if error else 200,
        users=users,
        error=error.to_problem() if error else None,
        done=done,
        form=form or {"username": "", "is_admin": False},
    )


@router.get("/admin/users")
def users_page(request: Request, done: str = "") -> Response:
    return _users(request, done=done)


@router.post("/admin/users")
def add_user(
    request: Request,
    username: str = Form(""),
    password: str = Form(""),
    is_admin: str = Form(""),
    csrf: str = Form(""),
) -> Response:
    admin = _require_admin(request)
    web.check_csrf(request, csrf)
    form = {"username": username, "is_admin": is_admin == "true"}
    try:
        body = web.validated(
            UserCreate,
            {"username": username.strip(), "password": password, "is_admin": is_admin == "true"},
        )
        with transaction() as conn:
            service.create_user(
                conn,
                username=body.username,
                password=body.password,
                is_admin=body.is_admin,
                actor=admin,
            )
    except DsaError as err:
        if err.status not in (409, 422):
            raise
        return _users(request, error=err, form=form)
    return web.redirect(web.url("/admin/users", done=f"User {body.username} added."))


@router.post("/admin/users/{username}")
def update_user(
    request: Request,
    username: str,
    disabled: str = Form(""),
    is_admin: str = Form(""),
    csrf: str = Form(""),
) -> Response:
    admin = _require_admin(request)
    web.check_csrf(request, csrf)
    flags = {"true": True, "false": False}
    try:
        with transaction() as conn:
            row = service.update_user(
                conn,
                username,
                is_admin=flags.get(is_admin),
                disabled=flags.get(disabled),
                actor=admin,
            )
    except DsaError as err:
        if err.status != 409:
            raise
        return _users(request, error=err)
    what = (
        ("disabled" if row["disabled"] else "enabled")
        if disabled in flags
        else ("now an administrator" if row["is_admin"] else "no longer an administrator")
    )
    return web.redirect(web.url("/admin/users", done=f"{row['username']} is {what}."))

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Request, Response

from core.config import get_settings
from core.db import transaction
from features.auth import service
from features.auth.models import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenList,
    ApiTokenOut,
    Login,
    PasswordChange,
    TokenOut,
    UserCreate,
    UserList,
    UserListed,
    UserOut,
    UserPatch,
)
from features.auth.service import User, current_user

router = APIRouter(prefix="/api/v1", tags=["auth"])


@router.post("/auth/login", response_model=TokenOut)
def login(body: Login, request: Request, response: Response) -> TokenOut:
    with transaction() as conn:
        user = service.authenticate(
            conn,
            username=body.username,
            password=body.password,
            address=request.client.host if request.client else None,
            device=request.cookies.get(service.DEVICE_COOKIE),
        )
    token, ttl = service.issue_access_token(user)
    service.set_device_cookie(
        response, user.username, secure=get_settings().secure_cookies(request.url.scheme)
    )
    return TokenOut(access_token=token, expires_in=ttl)


@router.get("/users/me", response_model=UserOut)
def me(user: User = Depends(current_user)) -> UserOut:
    return UserOut(
        id=user.id,
        username=user.username,
        is_admin=user.is_admin,
        must_change_password=user.must_change_password,
    )


@router.post("/users/me/password", status_code=204)
def change_password(body: PasswordChange, user: User = Depends(current_user)) -> Response:
    with transaction() as conn:
        service.change_password(
            conn, user, current_password=body.current_password, new_password=body.new_password
        )
    return Response(status_code=204)


@router.get("/users", response_model=UserList)
def list_users(user: User = Depends(current_user)) -> UserList:
    service.require_admin(user)
    with transaction() as conn:
        rows = service.list_users(conn)
    return UserList(items=[UserListed.model_validate(r) for r in rows])


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: UserCreate, user: User = Depends(current_user)) -> UserOut:
    service.require_admin(user)
    with transaction() as conn:
        new = service.create_user(
            conn,
            username=body.username,
            password=body.password,
            is_admin=body.is_admin,
            actor=user,
        )
    return UserOut(id=new.id, username=new.username, is_admin=new.is_admin)


@router.patch("/users/{username}", response_model=UserListed)
def update_user(username: str, body: UserPatch, user: User = Depends(current_user)) -> UserListed:
    service.require_admin(user)
    with transaction() as conn:
        row = service.update_user(
            conn, username, is_admin=body.is_admin, disabled=body.disabled, actor=user
        )
    return UserListed.model_validate(row)


@router.post("/tokens", response_model=ApiTokenCreated, status_code=201)
def create_token(body: ApiTokenCreate, user: User = Depends(current_user)) -> ApiTokenCreated:
    with transaction() as conn:
        row = service.create_api_token(
            conn,
            user,
            name=body.name,
            expires_in_days=body.expires_in_days,
            scopes=body.scopes,
            datasets=body.datasets,
        )
    return ApiTokenCreated(**row)


@router.get("/tokens", response_model=ApiTokenList)
def list_tokens(user: User = Depends(current_user)) -> ApiTokenList:
    with transaction() as conn:
        rows = service.list_api_tokens(conn, user)
    return ApiTokenList(items=[ApiTokenOut.model_validate(r) for r in rows])


@router.delete("/tokens/{token_id}", status_code=204)
def delete_token(token_id: uuid.UUID, user: User = Depends(current_user)) -> Response:
    with transaction() as conn:
        service.delete_api_token(conn, user, token_id)
    return Response(status_code=204)

from __future__ import annotations

import uuid

from fastapi import APIRouter, Depends, Response

from core.db import transaction
from features.auth import service
from features.auth.models import (
    ApiTokenCreate,
    ApiTokenCreated,
    ApiTokenList,
    ApiTokenOut,
    Login,
    TokenOut,
    UserCreate,
    UserOut,
)
from features.auth.service import User, current_user

router = APIRouter(prefix="/api/v1", tags=["auth"])


@router.post("/auth/login", response_model=TokenOut)
def login(body: Login) -> TokenOut:
    with transaction() as conn:
        user = service.authenticate(conn, username=body.username, password=body.password)
    token, ttl = service.issue_access_token(user)
    return TokenOut(access_token=token, expires_in=ttl)


@router.get("/users/me", response_model=UserOut)
def me(user: User = Depends(current_user)) -> UserOut:
    return UserOut(id=user.id, username=user.username, is_admin=user.is_admin)


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: UserCreate, user: User = Depends(current_user)) -> UserOut:
    service.require_admin(user)
    with transaction() as conn:
        new = service.create_user(
            conn, username=body.username, password=body.password, is_admin=body.is_admin
        )
    return UserOut(id=new.id, username=new.username, is_admin=new.is_admin)


@router.post("/tokens", response_model=ApiTokenCreated, status_code=201)
def create_token(body: ApiTokenCreate, user: User = Depends(current_user)) -> ApiTokenCreated:
    with transaction() as conn:
        row = service.create_api_token(
            conn, user, name=body.name, expires_in_days=body.expires_in_days
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

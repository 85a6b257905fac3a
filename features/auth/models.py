from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1000)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=1000)
    is_admin: bool = False


class UserOut(BaseModel):
    id: uuid.UUID
    username: str
    is_admin: bool
    must_change_password: bool = False


class UserListed(BaseModel):
    id: uuid.UUID
    username: str
    is_admin: bool
    disabled: bool
    created_at: datetime


class UserList(BaseModel):
    items: list[UserListed]


class UserPatch(BaseModel):
    is_admin: bool | None = None
    disabled: bool | None = None


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1000)
    new_password: str = Field(min_length=8, max_length=1000)


Scope = Literal["read", "write", "admin"]


class ApiTokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    scopes: list[Scope] | None = Field(default=None, min_length=1, max_length=3)
    datasets: list[uuid.UUID] | None = Field(default=None, min_length=1, max_length=1000)


class ApiTokenOut(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    expires_at: datetime | None = None
    scopes: list[Scope] = ["read", "write", "admin"]
    datasets: list[uuid.UUID] | None = None
    parent_id: uuid.UUID | None = Field(
        default=None, description="the token this one was made with; revoking that revokes this"
    )


class ApiTokenCreated(ApiTokenOut):
    token: str


class ApiTokenList(BaseModel):
    items: list[ApiTokenOut]

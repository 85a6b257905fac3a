from __future__ import annotations

import uuid
from datetime import datetime

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


class ApiTokenCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiTokenOut(BaseModel):
    id: uuid.UUID
    name: str
    created_at: datetime
    expires_at: datetime | None = None


class ApiTokenCreated(ApiTokenOut):
    token: str


class ApiTokenList(BaseModel):
    items: list[ApiTokenOut]

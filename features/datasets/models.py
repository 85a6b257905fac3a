from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.models import Links

Visibility = Literal["private", "internal", "public"]
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"


def not_an_id(name: str | None) -> str | None:
    """A name stands for its dataset in paths (``/datasets/{name}/…``): it
    may not look like the id of another."""
    if name is not None:
        try:
            uuid.UUID(name)
        except ValueError:
            return name
        raise ValueError("a dataset name may not look like a dataset id (a UUID)")
    return name


class DatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME, description="letters, digits, _ . -; at most 100")
    description: str = Field(default="", max_length=10_000)
    primary_key: list[str] | None = Field(default=None, min_length=1, max_length=32)
    visibility: Visibility = "private"

    _name = field_validator("name")(not_an_id)


class DatasetPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, pattern=NAME)
    description: str | None = Field(default=None, max_length=10_000)
    primary_key: list[str] | None = Field(default=None, max_length=32)
    visibility: Visibility | None = None

    _name = field_validator("name")(not_an_id)


class Storage(BaseModel):
    bytes: int = Field(description="stored bytes the dataset's commits reference")
    unique_bytes: int = Field(description="of those, the bytes no other dataset references")


class DatasetOut(BaseModel):
    id: uuid.UUID
    name: str
    description: str
    primary_key: list[str] | None
    visibility: Visibility
    default_branch: str
    created_at: datetime
    updated_at: datetime
    storage: Storage | None = Field(
        None, description="only in GET /api/v1/datasets/{dataset_id}: the bytes its commits use"
    )


class DatasetList(BaseModel):
    items: list[DatasetOut]
    total: int
    page: int
    per_page: int
    links: Links


class PermissionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["read", "write", "admin"]


class PermissionOut(BaseModel):
    username: str
    role: str
    granted_at: datetime


class PermissionList(BaseModel):
    items: list[PermissionOut]

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

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


TAG = r"^[\w][\w .:/+-]{0,49}$"
Tag = Annotated[str, StringConstraints(pattern=TAG, strip_whitespace=True)]
MAX_README = 100_000


def unique_tags(tags: list[str] | None) -> list[str] | None:
    """Tags in their first order, each once."""
    return list(dict.fromkeys(tags)) if tags is not None else None


class DatasetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME, description="letters, digits, _ . -; at most 100")
    description: str = Field(default="", max_length=10_000)
    primary_key: list[str] | None = Field(default=None, min_length=1, max_length=32)
    visibility: Visibility = "private"
    tags: list[Tag] = Field(
        default_factory=list, max_length=32, description="at most 32, each 1–50 characters"
    )
    readme: str = Field(default="", max_length=MAX_README, description="Markdown")

    _name = field_validator("name")(not_an_id)
    _tags = field_validator("tags")(unique_tags)


class DatasetPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, pattern=NAME)
    description: str | None = Field(default=None, max_length=10_000)
    primary_key: list[str] | None = Field(default=None, max_length=32)
    visibility: Visibility | None = None
    tags: list[Tag] | None = Field(default=None, max_length=32)
    readme: str | None = Field(default=None, max_length=MAX_README)

    _name = field_validator("name")(not_an_id)
    _tags = field_validator("tags")(unique_tags)


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
    tags: list[str] = Field(default_factory=list)
    readme: str = Field(default="", description="Markdown (rendered sanitised in the web UI)")
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


class SearchMatch(BaseModel):
    field: Literal["name", "description", "readme", "tag", "table", "column"]
    text: str
    highlights: list[list[int]] | None = Field(
        default=None, description="[start, end) of the matched words in text (prose fields)"
    )


class SearchHit(BaseModel):
    dataset_id: uuid.UUID
    name: str
    description: str
    tags: list[str]
    visibility: Visibility
    owner: str | None
    updated_at: datetime
    matches: list[SearchMatch]
    score: float


class FacetValue(BaseModel):
    value: str
    count: int


class Facets(BaseModel):
    tags: list[FacetValue]
    visibility: list[FacetValue]
    owner: list[FacetValue]


class SearchPage(BaseModel):
    items: list[SearchHit]
    total: int
    page: int
    per_page: int
    facets: Facets | None = Field(default=None, description="with ?facets=true")
    links: Links

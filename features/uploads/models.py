"""Uploads' response models (request models live with the routes)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel


class JobLink(BaseModel):
    job: str


class UploadAccepted(BaseModel):
    job_id: uuid.UUID
    upload_id: uuid.UUID
    links: JobLink


class ImportAccepted(BaseModel):
    job_id: uuid.UUID
    links: JobLink

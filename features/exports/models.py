from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class ExportLink(BaseModel):
    url: str
    expires_at: datetime
    commit_id: str
    etag: str
    filename: str

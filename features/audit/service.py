"""Reading the audit log (writing it is ``core.audit``'s, in each action's
transaction). Installation administrators read all of it; a dataset's
admins read that dataset's entries (checked by the routes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import psycopg

from core import db

Q = db.Queries(__file__)
_EXPORT_BATCH = 2000


@dataclass(frozen=True, slots=True)
class Filter:
    dataset_id: uuid.UUID | None = None
    actor: str | None = None
    action: str | None = None  # an action, or a family ("ref" matches ref.create, ref.move…)
    since: datetime | None = None
    until: datetime | None = None

    def params(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "actor": self.actor,
            "action": self.action,
            "since": self.since,
            "until": self.until,
        }


def entries(
    conn: psycopg.Connection[Any], where: Filter, *, page: int, per_page: int
) -> tuple[list[dict[str, Any]], int]:
    rows = conn.execute(
        Q.entries, {**where.params(), "limit": per_page, "offset": (page - 1) * per_page}
    ).fetchall()
    total = rows[0]["total"] if rows else 0
    if not rows and page > 1:
        probe = conn.execute(Q.entries, {**where.params(), "limit": 1, "offset": 0}).fetchone()
        total = probe["total"] if probe else 0
    return [{k: v for k, v in r.items() if k != "total"} for r in rows], total


def export_ndjson(where: Filter) -> Iterator[bytes]:
    """Every matching entry as NDJSON, oldest first, read in batches through
    a server-side cursor (the log can be long; memory stays flat)."""
    with db.transaction() as conn, conn.cursor(name="audit_export") as cur:
        cur.itersize = _EXPORT_BATCH
        cur.execute(Q.export, where.params())
        while batch := cur.fetchmany(_EXPORT_BATCH):
            yield b"".join(
                orjson.dumps(row, option=orjson.OPT_UTC_Z | orjson.OPT_APPEND_NEWLINE)
                for row in batch
            )

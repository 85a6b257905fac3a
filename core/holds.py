"""Write holds: "objects I am writing are not referenced by any row yet".

A merge, a revert, an upload or a stored export writes its objects first and
the rows that reference them after. While it does, it holds a row of
``write_hold``; garbage collection keeps every unreferenced object written
since the oldest hold began, so it never deletes what such a writer has
stored and not yet recorded (features/integrity/gc.py, decision 0024).
Import jobs need no hold: their job row says the same.

A hold costs two single-row statements on a connection of its own (the
writer's transaction, if any, is not involved). A process killed mid-write
leaves its row; gc ignores and removes holds older than ``STALE_HOLD_S``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import psycopg

from core import db

STALE_HOLD_S = 6 * 3600.0  # a hold this old is a killed writer's


@contextmanager
def holding(what: str) -> Iterator[None]:
    """Hold for the duration of the block (``what``: for the log, e.g. ``merge``)."""
    hold_id = uuid.uuid4()
    with db.read() as conn:
        conn.execute(
            "INSERT INTO write_hold (id, what) VALUES (%(id)s, %(what)s)",
            {"id": hold_id, "what": what},
        )
    try:
        yield
    finally:
        with db.read() as conn:
            conn.execute("DELETE FROM write_hold WHERE id = %(id)s", {"id": hold_id})


def oldest(conn: psycopg.Connection[Any]) -> datetime | None:
    """When the oldest live hold began (stale ones are removed first)."""
    conn.execute(
        "DELETE FROM write_hold WHERE started_at < now() - make_interval(secs => %(s)s)",
        {"s": STALE_HOLD_S},
    )
    row = conn.execute("SELECT min(started_at) AS at FROM write_hold").fetchone()
    return row["at"] if row else None

"""The export tests' stored table: 30,000 rows of every kind of value a CSV
export formats, imported once a module (``big``), and an export of it."""

from __future__ import annotations

import datetime as dt
import io
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.db import read
from features.auth import service as auth_service
from features.datasets import service as datasets_service
from features.exports import service
from features.exports.service import Export
from tests.conftest import import_csv, make_dataset

ROWS = 30_000  # 30 chunks of 1,000 rows (the test stack's DSA_CHUNK_ROWS), row groups of 128


def table() -> pa.Table:
    i = list(range(ROWS))
    return pa.table(
        {
            "id": pa.array(i, pa.int64()),
            "name": pa.array(
                [None if k % 13 == 0 else ("=1+1" if k % 97 == 0 else f"name {k}") for k in i],
                pa.large_string(),
            ),
            "price": pa.array([k / 8 + 0.1 for k in i], pa.float64()),
            "blob": pa.array([bytes([k % 256, 251]) if k % 3 else None for k in i]),
            "day": pa.array([dt.date(2000, 1, 1) + dt.timedelta(days=k % 9000) for k in i]),
            "at_tz": pa.array(
                [dt.datetime(2021, 6, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=k) for k in i],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


@pytest.fixture(scope="module")
def big(client: Any, admin: dict[str, str], worker: Any) -> dict[str, Any]:
    ds = make_dataset(client, admin)
    buf = io.BytesIO()
    pq.write_table(table(), buf)
    job = import_csv(client, admin, ds["id"], buf.getvalue(), filename="big.parquet")
    assert job["state"] == "succeeded", job
    return {"ds": ds, "commit": job["commit_id"]}


def export_of(big: dict[str, Any], **options: Any) -> Export:
    with read() as conn:
        row = conn.execute("SELECT id FROM app_user WHERE username = 'admin'").fetchone()
        assert row is not None
        user = auth_service.user_by_id(conn, row["id"] if isinstance(row, dict) else row[0])
        dataset = datasets_service.require(conn, user, uuid.UUID(big["ds"]["id"]), "read")
        return service.prepare(
            conn,
            dataset,
            big["commit"],
            table=None,
            format=options.get("format", "csv"),
            columns=options.get("columns"),
            filter=options.get("filter"),
            compression=None,
            raw=options.get("raw", False),
        )

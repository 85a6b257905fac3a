"""Column statistics over the API (issue 17, "Statistics"): computed by the
worker after an import, served at any ref, compared between versions, and
read only by those who may read the dataset."""

from __future__ import annotations

import time
import uuid
from typing import Any

import polars as pl
import pytest

from tests.conftest import Worker, import_csv, make_dataset, make_user

V1 = b"id,city,price,day\n" + b"".join(
    f"{i},{['Oslo', 'Lima', 'Rome'][i % 3]},{i * 1.5},2024-01-{1 + i % 28:02d}\n".encode()
    for i in range(300)
)
# the second version: Lima's rows gone, Kyoto's added, prices higher, a null
V2 = b"id,city,price,day\n" + b"".join(
    f"{i},{['Oslo', 'Kyoto', 'Rome'][i % 3]},{'' if i == 5 else i * 2.5},".encode()
    + f"2024-02-{1 + i % 28:02d}\n".encode()
    for i in range(300)
)


@pytest.fixture(scope="module")
def versions(client: Any, admin: dict[str, str], worker: Worker) -> dict[str, Any]:
    ds = make_dataset(client, admin, name=f"stats-{uuid.uuid4().hex[:8]}")
    a = import_csv(client, admin, ds["id"], V1, filename="sales.csv")
    b = import_csv(client, admin, ds["id"], V2, filename="sales.csv")
    assert a["state"] == b["state"] == "succeeded", (a, b)
    return {"ds": ds, "v1": a["commit_id"], "v2": b["commit_id"]}


def _by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in body["columns"]}


def test_the_worker_computes_statistics_after_an_import(versions: dict[str, Any]) -> None:
    """Nobody asked: the branch's move sent ``stats.follow`` and a worker
    remembered the new version's statistics."""
    from core import db
    from core.objects import get_commit
    from core.storage import get_store

    entry = get_commit(get_store(), versions["v2"]).tables["sales"]
    deadline = time.monotonic() + 30
    while True:
        with db.read() as conn:
            row = conn.execute(
                "SELECT seconds FROM table_stats WHERE manifest_id = %s AND schema_id = %s",
                (entry.manifest, entry.schema),
            ).fetchone()
        if row is not None:
            break
        assert time.monotonic() < deadline, "the worker did not compute the statistics"
        time.sleep(0.1)


def test_statistics_of_a_version_match_its_rows(
    client: Any, admin: dict[str, str], versions: dict[str, Any]
) -> None:
    ds = versions["ds"]["id"]
    r = client.get(f"/api/v1/datasets/{ds}/refs/main~1/stats", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["commit_id"] == versions["v1"] and body["table"] == "sales"
    assert body["row_count"] == 300 and body["sample_rows"] == 300
    cols = _by_name(body)
    frame = pl.read_csv(V1, try_parse_dates=True)
    price = cols["price"]
    assert price["type"] == "float" and price["null_count"] == 0
    assert price["min"] == 0.0 and price["max"] == 448.5
    assert price["mean"] == pytest.approx(frame["price"].mean())
    assert price["stddev"] == pytest.approx(frame["price"].std())
    assert sum(b["count"] for b in price["histogram"]) == 300
    assert price["distinct_count"] == 300 and price["distinct_approx"] is False
    city = cols["city"]
    assert city["distinct_count"] == 3
    assert {t["value"]: t["count"] for t in city["top_values"]} == {
        "Oslo": 100,
        "Lima": 100,
        "Rome": 100,
    }
    day = cols["day"]
    assert day["type"] == "date" and day["min"] == "2024-01-01" and day["max"] == "2024-01-28"
    assert day["quantiles"]["p50"].startswith("2024-01-")


def test_compare_shows_how_each_column_moved(
    client: Any, admin: dict[str, str], versions: dict[str, Any]
) -> None:
    ds = versions["ds"]["id"]
    r = client.get(f"/api/v1/datasets/{ds}/compare/main~1...main?stats=true&limit=0", headers=admin)
    assert r.status_code == 200, r.text
    diff = {d["column"]: d for d in r.json()["stats_diff"]}
    assert set(diff) == {"id", "city", "price", "day"}
    assert diff["id"]["changed"] == []
    city = diff["city"]
    assert city["top_values_gained"] == ["Kyoto"] and city["top_values_lost"] == ["Lima"]
    price = diff["price"]
    assert {"null_count", "max", "mean"} <= set(price["changed"])
    assert price["base"]["null_count"] == 0 and price["head"]["null_count"] == 1
    assert price["head"]["max"] == 747.5
    # without the flag, no statistics are read
    plain = client.get(f"/api/v1/datasets/{ds}/compare/main~1...main?limit=0", headers=admin)
    assert "stats_diff" not in plain.json() or plain.json()["stats_diff"] is None


def test_statistics_need_read_access_and_a_table(
    client: Any, admin: dict[str, str], versions: dict[str, Any]
) -> None:
    ds = versions["ds"]["id"]
    stranger = make_user(client, admin)
    r = client.get(f"/api/v1/datasets/{ds}/refs/main/stats", headers=stranger)
    assert r.status_code == 404
    r = client.get(f"/api/v1/datasets/{ds}/refs/main/stats?table=nope", headers=admin)
    assert r.status_code == 404 and r.json()["code"] == "table_not_found"
    r = client.get(f"/api/v1/datasets/{ds}/refs/no-such-ref/stats", headers=admin)
    assert r.status_code == 404

"""Schema changes people meant (issue 17): an upload whose columns differ
from the table's gets schema_suggestions in its job (renames by name and
values, retypes), and options.column_map applies a mapping."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import pytest

from tests.conftest import Worker, import_csv, make_dataset, upload

ROWS = [(1000 + i, f"{(i * 37) % 500}.25", f"city{i % 7}") for i in range(300)]


def _csv(header: str, rows: list[tuple[Any, ...]]) -> bytes:
    return (header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)).encode()


@pytest.fixture
def table(client: Any, admin: dict[str, str], worker: Worker) -> str:
    ds = make_dataset(client, admin, name=f"suggest-{uuid.uuid4().hex[:8]}")
    job = import_csv(client, admin, ds["id"], _csv("customer_id,amount,city", ROWS),
                     filename="t.csv")  # fmt: skip
    assert job["state"] == "succeeded", job
    return str(ds["id"])


def test_a_renamed_column_is_suggested_with_its_evidence(
    client: Any, admin: dict[str, str], table: str
) -> None:
    job = import_csv(client, admin, table, _csv("cust_id,amount,city", ROWS), filename="t.csv")
    assert job["state"] == "succeeded"
    (hint,) = job["schema_suggestions"]
    assert hint["kind"] == "rename" and (hint["from"], hint["to"]) == ("cust_id", "customer_id")
    assert hint["confidence"] >= 0.9
    assert hint["reason"].startswith("same values in 100.0 % of rows")
    assert job["result"]["schema_suggestions"] == [hint]


def test_reordered_rows_and_columns_still_pair_by_values(
    client: Any, admin: dict[str, str], table: str
) -> None:
    shuffled = [(c, i, a) for i, a, c in ROWS]
    random.Random(3).shuffle(shuffled)
    job = import_csv(client, admin, table, _csv("town,client,amount", shuffled),
                     filename="t.csv")  # fmt: skip
    pairs = {(h["from"], h["to"]): h for h in job["schema_suggestions"]}
    assert set(pairs) == {("town", "city"), ("client", "customer_id")}
    assert "of its values are the old column's" in pairs[("client", "customer_id")]["reason"]


def test_a_retyped_column_says_how_to_keep_its_type(
    client: Any, admin: dict[str, str], table: str
) -> None:
    rows = [(a, "n/a" if i == 0 else b, c) for i, (a, b, c) in enumerate(ROWS)]
    job = import_csv(client, admin, table, _csv("customer_id,amount,city", rows), filename="t.csv")
    (hint,) = job["schema_suggestions"]
    assert hint["kind"] == "retype" and hint["from"] == hint["to"] == "amount"
    assert "float" in hint["reason"] and "column_types" in hint["reason"]


def test_column_map_applies_the_mapping(client: Any, admin: dict[str, str], table: str) -> None:
    first = client.get(f"/api/v1/datasets/{table}/refs/main/tables", headers=admin).json()
    job = import_csv(client, admin, table, _csv("cust_id,amount,city", ROWS), filename="t.csv",
                     options=json.dumps({"column_map": {"cust_id": "customer_id"}}))  # fmt: skip
    assert job["state"] == "succeeded", job
    assert "schema_suggestions" not in job or not job["schema_suggestions"]
    after = client.get(f"/api/v1/datasets/{table}/refs/main/tables", headers=admin).json()
    assert after["items"][0]["columns"] == first["items"][0]["columns"]
    assert job["commit_id"] == after["commit_id"] == first["commit_id"]  # the same rows: no commit
    bad = upload(client, admin, table, _csv("a,b", [(1, 2)]), filename="t.csv",
                 options=json.dumps({"column_map": {"a": 1}}))  # fmt: skip
    assert bad.status_code == 422
    clash = import_csv(client, admin, table, _csv("a,b", [(1, 2)]), filename="t.csv",
                       options=json.dumps({"column_map": {"a": "b"}}))  # fmt: skip
    assert clash["state"] == "failed" and clash["error"]["code"] == "duplicate_column_name"

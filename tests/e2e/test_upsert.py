"""Upsert: rows with a known key replace theirs, others are appended."""

from __future__ import annotations

import httpx

from tests.conftest import import_csv, make_dataset, upload


def rows(http: httpx.Client, auth: dict[str, str], ds: str, ref: str = "main") -> list[list]:
    r = http.get(f"/api/v1/datasets/{ds}/refs/{ref}/data", params={"limit": 1000}, headers=auth)
    return list(r.json()["rows"])


def test_upsert_replaces_known_keys_in_place_and_appends_new_ones(
    http: httpx.Client, auth: dict[str, str]
) -> None:
    ds = make_dataset(http, auth, primary_key=["id"])["id"]
    v1 = import_csv(http, auth, ds, b"id,name,n\n1,ann,10\n2,bob,20\n3,cy,30\n", filename="t.csv")
    assert v1["state"] == "succeeded"
    # columns in another order; 2 changes, 3 stays the same, 4 is new
    job = import_csv(
        http, auth, ds, b"name,id,n\nBOB,2,21\ncy,3,30\ndee,4,40\n", filename="t.csv", mode="upsert"
    )
    assert job["state"] == "succeeded", job
    assert job["result"]["table_rows"] == 4
    assert rows(http, auth, ds) == [[1, "ann", 10], [2, "BOB", 21], [3, "cy", 30], [4, "dee", 40]]
    assert rows(http, auth, ds, v1["commit_id"]) == [[1, "ann", 10], [2, "bob", 20], [3, "cy", 30]]


def test_upsert_refusals(http: httpx.Client, auth: dict[str, str]) -> None:
    ds = make_dataset(http, auth, primary_key=["id"])["id"]
    import_csv(http, auth, ds, b"id,name\n1,a\n", filename="t.csv")
    job = import_csv(http, auth, ds, b"id,name\n1,x\n2,y\n1,z\n", filename="t.csv", mode="upsert")
    assert job["state"] == "failed" and job["error"]["code"] == "duplicate_key"
    assert job["error"]["rows"] == [1, 3] and job["error"]["key"] == {"id": 1}
    job = import_csv(http, auth, ds, b"id,name\n,x\n", filename="t.csv", mode="upsert")
    assert job["state"] == "failed" and job["error"]["code"] == "null_key"
    assert rows(http, auth, ds) == [[1, "a"]]
    # a dataset without a primary key: refused before anything is queued
    plain = make_dataset(http, auth)["id"]
    r = upload(http, auth, plain, b"id\n1\n", mode="upsert")
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "mode"


def test_upsert_into_a_new_table(http: httpx.Client, auth: dict[str, str]) -> None:
    ds = make_dataset(http, auth, primary_key=["k"])["id"]
    job = import_csv(http, auth, ds, b"k,v\na,1\nb,2\n", filename="fresh.csv", mode="upsert")
    assert job["state"] == "succeeded", job
    assert rows(http, auth, ds) == [["a", 1], ["b", 2]]

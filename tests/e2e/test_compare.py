"""Compare over HTTP: real imports through the worker, then the diff a user reads."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import import_csv, make_dataset


def _csv(rows: list[tuple[Any, ...]], header: str = "id,name,qty") -> bytes:
    return (header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)).encode()


BASE = [(i, f"item{i}", i * 10) for i in range(1, 301)]


def _two_versions(
    http: httpx.Client, auth: dict[str, str], head_rows: list[tuple[Any, ...]], **ds: Any
) -> tuple[str, str, str]:
    d = make_dataset(http, auth, **ds)
    first = import_csv(http, auth, d["id"], _csv(BASE), message="v1")
    assert first["state"] == "succeeded", first
    second = import_csv(http, auth, d["id"], _csv(head_rows), message="v2")
    assert second["state"] == "succeeded", second
    return d["id"], first["commit_id"], second["commit_id"]


def test_edited_cells_added_and_removed_rows(http: httpx.Client, auth: dict[str, str]) -> None:
    head = list(BASE)
    head[9] = (10, "item10", 999)  # one cell edited
    del head[200]  # row 201 removed
    head.insert(50, (1000, "new", 1))  # a row added
    ds, v1, v2 = _two_versions(http, auth, head)
    r = http.get(f"/api/v1/datasets/{ds}/compare/{v1[:10]}...main", headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["base_commit_id"] == v1 and body["head_commit_id"] == v2
    assert body["summary"] == {"added": 1, "removed": 1, "modified": 1, "unchanged": 298}
    assert body["total_changes"] == 3
    assert body["schema_diff"]["breaking"] is False
    ops = {c["op"]: c for c in body["changes"]}
    assert ops["modify"]["cells"] == {"qty": {"from": 100, "to": 999}}
    assert ops["modify"]["base_position"] == 9 and ops["modify"]["head_position"] == 9
    assert ops["add"]["row"] == {"id": 1000, "name": "new", "qty": 1}
    assert ops["add"]["head_position"] == 50
    assert ops["remove"]["row"] == {"id": 201, "name": "item201", "qty": 2010}
    # head order: the modification, the addition, then the removal
    assert [c["op"] for c in body["changes"]] == ["modify", "add", "remove"]
    # summary alone
    s = http.get(f"/api/v1/datasets/{ds}/compare/{v1}...{v2}?limit=0", headers=auth).json()
    assert s["changes"] == [] and s["summary"] == body["summary"]
    # pages
    p = http.get(
        f"/api/v1/datasets/{ds}/compare/{v1}...{v2}", params={"offset": 1, "limit": 1}, headers=auth
    ).json()
    assert [c["op"] for c in p["changes"]] == ["add"]


def test_keyed_pairs_by_primary_key(http: httpx.Client, auth: dict[str, str]) -> None:
    head = list(BASE)
    head.reverse()  # order changes are not changes
    head[0] = (300, "renamed-item", 3000)
    ds, v1, v2 = _two_versions(http, auth, head, primary_key=["id"])
    body = http.get(f"/api/v1/datasets/{ds}/compare/{v1}...{v2}", headers=auth).json()
    assert body["key"] == ["id"]
    assert body["summary"] == {"added": 0, "removed": 0, "modified": 1, "unchanged": 299}
    (change,) = body["changes"]
    assert change["key"] == {"id": 300}
    assert change["cells"] == {"name": {"from": "item300", "to": "renamed-item"}}
    assert change["base_position"] == 299 and change["head_position"] == 0


def test_schema_diff(http: httpx.Client, auth: dict[str, str]) -> None:
    d = make_dataset(http, auth)
    import_csv(http, auth, d["id"], _csv(BASE))
    # qty renamed to amount, name removed, a column added
    head = _csv([(i, i * 10, "x") for i in range(1, 301)], header="id,amount,flag")
    import_csv(http, auth, d["id"], head)
    body = http.get(f"/api/v1/datasets/{d['id']}/compare/main~...main", headers=auth)
    commits = http.get(f"/api/v1/datasets/{d['id']}/commits", headers=auth).json()["items"]
    v2, v1 = commits[0]["id"], commits[1]["id"]
    # main~ is main's parent (issue 16's ref suffixes)
    assert body.status_code == 200, body.text
    assert (body.json()["base_commit_id"], body.json()["head_commit_id"]) == (v1, v2)
    sd = http.get(f"/api/v1/datasets/{d['id']}/compare/{v1}...{v2}", headers=auth).json()[
        "schema_diff"
    ]
    assert sd["renamed"] == [{"from": "qty", "to": "amount"}]
    assert sd["removed"] == ["name"] and sd["added"] == ["flag"]
    assert sd["breaking"] is True


def test_bad_ranges_are_problems(http: httpx.Client, auth: dict[str, str]) -> None:
    d = make_dataset(http, auth)
    r = http.get(f"/api/v1/datasets/{d['id']}/compare/main", headers=auth)
    assert r.status_code == 400 and r.json()["code"] == "invalid_range"
    r = http.get(f"/api/v1/datasets/{d['id']}/compare/main...nope", headers=auth)
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem")

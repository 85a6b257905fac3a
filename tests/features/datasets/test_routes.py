from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import make_dataset, make_user


def test_create_get_patch_delete(client: Any, admin: dict[str, str]) -> None:
    ds = make_dataset(client, admin, description="first", primary_key=["id"])
    assert ds["default_branch"] == "main" and ds["visibility"] == "private"
    assert ds["primary_key"] == ["id"]
    got = client.get(f"/api/v1/datasets/{ds['id']}", headers=admin).json()
    # GET alone counts what it stores (its empty root commit: one small object)
    storage = got.pop("storage")
    assert storage["bytes"] > 0 and storage["unique_bytes"] <= storage["bytes"]
    assert ds.pop("storage") is None and got == ds
    refs = client.get(f"/api/v1/datasets/{ds['id']}/refs", headers=admin).json()["items"]
    assert [(r["name"], r["kind"]) for r in refs] == [("main", "branch")]
    hist = client.get(f"/api/v1/datasets/{ds['id']}/commits", headers=admin).json()
    assert hist["total"] == 1 and hist["items"][0]["parents"] == []
    assert hist["items"][0]["id"] == refs[0]["commit_id"]

    r = client.patch(
        f"/api/v1/datasets/{ds['id']}",
        json={"description": "second", "visibility": "internal"},
        headers=admin,
    )
    assert r.status_code == 200
    assert r.json()["description"] == "second" and r.json()["visibility"] == "internal"
    assert r.json()["primary_key"] == ["id"]

    assert client.delete(f"/api/v1/datasets/{ds['id']}", headers=admin).status_code == 204
    assert client.get(f"/api/v1/datasets/{ds['id']}", headers=admin).status_code == 404
    # the name is free again after a soft delete
    make_dataset(client, admin, name=ds["name"])


def test_duplicate_name_and_invalid_body(client: Any, admin: dict[str, str]) -> None:
    ds = make_dataset(client, admin)
    r = client.post("/api/v1/datasets", json={"name": ds["name"]}, headers=admin)
    assert r.status_code == 409 and r.json()["code"] == "dataset_exists"
    r = client.post(
        "/api/v1/datasets", json={"name": "bad name!", "visibility": "secret"}, headers=admin
    )
    assert r.status_code == 422
    body = r.json()
    assert body["status"] == 422
    assert {e["field"] for e in body["errors"]} == {"name", "visibility"}


def test_list_search_and_pagination(client: Any, admin: dict[str, str]) -> None:
    tag = uuid.uuid4().hex[:8]
    names = [f"srch-{tag}-{i}" for i in range(5)]
    for n in names:
        make_dataset(client, admin, name=n)
    r = client.get("/api/v1/datasets", params={"q": tag, "per_page": 2}, headers=admin).json()
    assert r["total"] == 5 and len(r["items"]) == 2 and r["links"]["next"]
    seen = [d["name"] for d in r["items"]]
    page = 2
    while r["links"]["next"]:
        r = client.get(
            "/api/v1/datasets", params={"q": tag, "per_page": 2, "page": page}, headers=admin
        ).json()
        seen += [d["name"] for d in r["items"]]
        page += 1
    assert sorted(seen) == names
    assert (
        client.get("/api/v1/datasets", params={"per_page": 501}, headers=admin).status_code == 422
    )


def test_roles_and_visibility(client: Any, admin: dict[str, str]) -> None:
    owner = make_user(client, admin)
    other = make_user(client, admin)
    ds = make_dataset(client, owner)
    url = f"/api/v1/datasets/{ds['id']}"
    # a private dataset is invisible to others: 404, not 403
    assert client.get(url, headers=other).status_code == 404
    assert client.get(f"{url}/refs/main/tables", headers=other).status_code == 404
    names = [d["name"] for d in client.get("/api/v1/datasets", headers=other).json()["items"]]
    assert ds["name"] not in names
    # read role: can read, cannot write (403)
    who = other["X-Test-Username"]
    r = client.put(f"{url}/permissions/{who}", json={"role": "read"}, headers=owner)
    assert r.status_code == 200 and r.json()["role"] == "read"
    assert client.get(url, headers=other).status_code == 200
    r = client.patch(url, json={"description": "x"}, headers=other)
    assert r.status_code == 403
    r = client.post(f"{url}/refs/main/uploads", files={"file": ("a.csv", b"a\n1\n")}, headers=other)
    assert r.status_code == 403
    perms = client.get(f"{url}/permissions", headers=owner).json()["items"]
    assert {(p["username"], p["role"]) for p in perms} == {
        (owner["X-Test-Username"], "admin"),
        (who, "read"),
    }
    assert client.delete(f"{url}/permissions/{who}", headers=owner).status_code == 204
    assert client.get(url, headers=other).status_code == 404
    # the last admin cannot be removed, nor demoted (that failed before: 200)
    r = client.delete(f"{url}/permissions/{owner['X-Test-Username']}", headers=owner)
    assert r.status_code == 409
    r = client.put(
        f"{url}/permissions/{owner['X-Test-Username']}", json={"role": "write"}, headers=owner
    )
    assert r.status_code == 409 and r.json()["code"] == "last_admin"
    assert client.get(f"{url}/permissions", headers=owner).status_code == 200
    # who holds a role is the admins' business (that failed before: any reader listed them)
    client.put(f"{url}/permissions/{who}", json={"role": "write"}, headers=owner)
    r = client.get(f"{url}/permissions", headers=other)
    assert r.status_code == 403
    client.delete(f"{url}/permissions/{who}", headers=owner)
    # internal: any signed-in user reads; public: anyone
    client.patch(url, json={"visibility": "internal"}, headers=owner)
    assert client.get(url, headers=other).status_code == 200
    assert client.get(url).status_code == 404
    client.patch(url, json={"visibility": "public"}, headers=owner)
    assert client.get(url).status_code == 200
    assert client.patch(url, json={"description": "x"}).status_code == 401

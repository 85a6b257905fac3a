from __future__ import annotations

from typing import Any

from tests.conftest import login, make_user


def test_login_and_me(client: Any, admin: dict[str, str]) -> None:
    me = client.get("/api/v1/users/me", headers=admin).json()
    assert me["username"] == "admin" and me["is_admin"] is True
    r = client.post("/api/v1/auth/login", json={"username": "admin", "password": "wrong-one"})
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "bad_credentials"
    r = client.post("/api/v1/auth/login", json={"username": "nobody", "password": "whatever1"})
    assert r.status_code == 401


def test_token_shape(client: Any) -> None:
    from tests.conftest import ADMIN_PASSWORD

    r = client.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    body = r.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0 and body["access_token"]


def test_requests_without_or_with_bad_tokens_are_401(client: Any) -> None:
    assert client.get("/api/v1/users/me").status_code == 401
    r = client.get("/api/v1/users/me", headers={"Authorization": "Bearer not-a-jwt"})
    assert r.status_code == 401 and r.json()["code"] == "bad_token"


def test_only_admins_create_users(client: Any, admin: dict[str, str]) -> None:
    user = make_user(client, admin)
    r = client.post(
        "/api/v1/users", json={"username": "sneaky", "password": "long-enough"}, headers=user
    )
    assert r.status_code == 403
    name = user["X-Test-Username"]
    r = client.post(
        "/api/v1/users", json={"username": name, "password": "long-enough"}, headers=admin
    )
    assert r.status_code == 409
    r = client.post("/api/v1/users", json={"username": "x y", "password": "1"}, headers=admin)
    assert r.status_code == 422
    fields = {e["field"] for e in r.json()["errors"]}
    assert fields == {"username", "password"}


def test_api_tokens(client: Any, admin: dict[str, str]) -> None:
    user = make_user(client, admin)
    r = client.post("/api/v1/tokens", json={"name": "ci", "expires_in_days": 1}, headers=user)
    assert r.status_code == 201
    token = r.json()["token"]
    me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["username"] == user["X-Test-Username"]
    listed = client.get("/api/v1/tokens", headers=user).json()["items"]
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0]
    assert client.delete(f"/api/v1/tokens/{r.json()['id']}", headers=user).status_code == 204
    assert (
        client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )


def test_login_of_new_user(client: Any, admin: dict[str, str]) -> None:
    r = client.post(
        "/api/v1/users", json={"username": "carol", "password": "carol-pass-1"}, headers=admin
    )
    assert r.status_code == 201 and r.json()["is_admin"] is False
    assert login(client, "carol", "carol-pass-1")

"""Every web UI page × six kinds of visitor × a public, an internal and a
private dataset (issue 15): the pages call the same permission check as the
REST API; this shows each page answers as its need says. Every UI route has
an entry in ``PAGES`` (GET) or ``FORMS`` (POST); a route added without one
fails ``test_every_page_has_an_entry``. Forms are also refused to a visitor
without the session's CSRF token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import import_csv, make_dataset, make_user, method_paths
from tests.ui.conftest import sign_in

VISITORS = ("anonymous", "stranger", "reader", "writer", "dataset_admin", "site_admin")
ROLE = {"reader": 1, "writer": 2, "dataset_admin": 3, "site_admin": 3}
LEVEL = {"read": 1, "write": 2, "admin": 3}
D = "/datasets/{dataset_id}"

# GET pages: what they need ("read" lets anonymous visitors in; "user+…" signs them in first)
PAGES: dict[str, tuple[str, str]] = {
    "/": ("redirect", "/"),  # to /datasets
    "/signin": ("signin form", "/signin"),  # a signed-in visitor is sent on
    "/datasets": ("anyone", "/datasets"),
    D: ("read", D),
    f"{D}/history": ("read", f"{D}/history"),
    f"{D}/commits/{{commit_ref}}": ("read", f"{D}/commits/main"),
    f"{D}/compare": ("read", f"{D}/compare"),
    f"{D}/compare/{{spec:path}}": ("read", f"{D}/compare/v1...main"),
    f"{D}/branches": ("read", f"{D}/branches"),
    f"{D}/settings": ("user+read", f"{D}/settings"),
    f"{D}/merge": ("user+read", f"{D}/merge"),
    f"{D}/upload": ("user+write", f"{D}/upload"),
    f"{D}/jobs/{{job_id}}": ("user+read", f"{D}/jobs/{{job_id}}"),
    f"{D}/jobs/{{job_id}}/outcome": ("user+read", f"{D}/jobs/{{job_id}}/outcome"),
    f"{D}/activity": ("user+admin", f"{D}/activity"),
    "/account/tokens": ("user", "/account/tokens"),
    "/account/password": ("user", "/account/password"),
    "/admin/users": ("site", "/admin/users"),
}
# POST forms: the check their handler makes (besides CSRF)
FORMS = {
    "/datasets": "user",
    f"{D}/settings": "admin",
    f"{D}/permissions": "admin",
    f"{D}/permissions/{{username}}/delete": "admin",
    f"{D}/delete": "admin",
    f"{D}/branches": "write",
    f"{D}/tags": "write",
    f"{D}/branches/{{name:path}}/delete": "write",
    f"{D}/branches/{{name:path}}/protect": "admin",
    f"{D}/tags/{{name:path}}/delete": "admin",
    f"{D}/merge": "write (admin on a protected branch)",
    f"{D}/upload": "write (admin on a protected branch)",
    "/signin": "anyone",
    "/signout": "user",
    "/account/tokens": "user",
    "/account/tokens/{token_id}/delete": "user",
    "/account/password": "user",
    "/admin/users": "site",
    "/admin/users/{username}": "site",
}


def _ui_routes(app: Any) -> set[tuple[str, str]]:
    service = ("/api/", "/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json")
    return {(m, p) for m, p in method_paths(app) if not p.startswith(service)}


def test_every_page_has_an_entry(app: Any) -> None:
    routes = _ui_routes(app)
    listed = {("GET", p) for p in PAGES} | {("POST", p) for p in FORMS}
    assert not routes - listed, f"UI routes without an entry: {sorted(routes - listed)}"
    assert not listed - routes, (
        f"entries for routes that no longer exist: {sorted(listed - routes)}"
    )


@pytest.fixture(scope="module")
def visitors(app: Any, client: Any, admin: dict[str, str], worker: Any) -> Iterator[Any]:
    from tests.conftest import ADMIN_PASSWORD

    owner_password = "owner-password-1"
    owner = make_user(client, admin, password=owner_password)
    people = {"dataset_admin": (owner["X-Test-Username"], owner_password)}
    for who in ("stranger", "reader", "writer"):
        password = f"{who}-password-1"
        h = make_user(client, admin, password=password)
        people[who] = (h["X-Test-Username"], password)
    people["site_admin"] = ("admin", ADMIN_PASSWORD)
    datasets = {}
    for visibility in ("public", "internal", "private"):
        ds = make_dataset(client, owner, visibility=visibility)
        d = f"/api/v1/datasets/{ds['id']}"
        for who, role in (("reader", "read"), ("writer", "write")):
            client.put(f"{d}/permissions/{people[who][0]}", json={"role": role}, headers=owner)
        job = import_csv(client, owner, ds["id"], b"id,v\n1,a\n")
        client.post(f"{d}/tags", json={"name": "v1", "from": "main"}, headers=owner)
        ds["job_id"] = job["id"]
        datasets[visibility] = ds
    clients = {"anonymous": TestClient(app, raise_server_exceptions=False)}
    for who, (name, password) in people.items():
        c = TestClient(app, raise_server_exceptions=False)
        sign_in(c, name, password)
        clients[who] = c
    yield clients, datasets
    for c in clients.values():
        c.close()


def expected(need: str, visitor: str, visibility: str) -> str:
    signed_in = visitor != "anonymous"
    if need == "anyone":
        return "200"
    if need == "redirect":
        return "303"
    if need == "signin form":
        return "303" if signed_in else "200"
    if need.startswith("user") or need == "site":
        if not signed_in:
            return "signin"
        if need == "user":
            return "200"
        if need == "site":
            return "200" if visitor == "site_admin" else "403"
    implied = 1 if visibility == "public" or (visibility == "internal" and signed_in) else 0
    role = max(implied, ROLE.get(visitor, 0))
    if role == 0:
        return "404"
    return "200" if role >= LEVEL[need.split("+")[-1]] else "403"


def outcome(r: Any) -> str:
    if r.status_code in (302, 303) and "/signin" in r.headers.get("location", ""):
        return "signin"
    return str(r.status_code)


@pytest.mark.parametrize("route", sorted(PAGES))
def test_each_page_answers_as_its_need_says(visitors: Any, route: str) -> None:
    clients, datasets = visitors
    need, path = PAGES[route]
    wrong = []
    for visibility, ds in datasets.items():
        url = path.format(dataset_id=ds["id"], job_id=ds["job_id"])
        for visitor in VISITORS:
            r = clients[visitor].get(url, follow_redirects=False)
            want, got = expected(need, visitor, visibility), outcome(r)
            if want != got:
                wrong.append(f"{visitor} on {visibility}: expected {want}, got {got}")
    assert not wrong, "\n".join(wrong)


def test_forms_need_the_sessions_csrf_token(visitors: Any) -> None:
    clients, datasets = visitors
    ds = datasets["private"]
    for route in FORMS:
        url = route.replace("{name:path}", "main").format(
            dataset_id=ds["id"], username="x", token_id=ds["job_id"]
        )
        r = clients["site_admin"].post(url, data={}, follow_redirects=False)
        if route.endswith("/upload"):  # a form that is not multipart is refused before it is read
            assert r.status_code == 400, (route, r.status_code)
            continue
        assert r.status_code == 403 and "security token" in r.text, (route, r.status_code)

"""Every web UI page × six kinds of visitor × a public, an internal and a
private dataset (issue 15): the pages call the same permission check as the
REST API; this shows each page answers as its need says. Every UI route has
an entry in ``PAGES`` (GET) or ``FORMS`` (POST); a route added without one
fails ``test_every_page_has_an_entry``. Forms are refused to a visitor
without the session's CSRF token, and each form is posted by every visitor
on every dataset with a harmless probe (``PROBES``): the permission check
lets in exactly whom the form's need says."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import import_csv, make_dataset, make_user, method_paths
from tests.ui.conftest import csrf_of, sign_in

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
    f"{D}/stats": ("read", f"{D}/stats"),
    f"{D}/download": ("read", f"{D}/download?ref=main&format=csv&show=link"),
    f"{D}/settings": ("user+read", f"{D}/settings"),
    f"{D}/merge": ("user+read", f"{D}/merge"),
    f"{D}/upload": ("user+write", f"{D}/upload"),
    f"{D}/jobs/{{job_id}}": ("user+read", f"{D}/jobs/{{job_id}}"),
    f"{D}/jobs/{{job_id}}/outcome": ("user+read", f"{D}/jobs/{{job_id}}/outcome"),
    f"{D}/activity": ("user+admin", f"{D}/activity"),
    f"{D}/webhooks": ("user+admin", f"{D}/webhooks"),
    f"{D}/schedules": ("user+write", f"{D}/schedules"),
    f"{D}/webhooks/{{webhook_id}}": ("user+admin", f"{D}/webhooks/{{webhook_id}}"),
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
    f"{D}/webhooks": "admin",
    f"{D}/schedules": "write",
    f"{D}/schedules/{{schedule_id}}/pause": "write",
    f"{D}/schedules/{{schedule_id}}/run": "write",
    f"{D}/schedules/{{schedule_id}}/delete": "write",
    f"{D}/webhooks/{{webhook_id}}/delete": "admin",
    f"{D}/webhooks/{{webhook_id}}/test": "admin",
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
        hook = client.post(
            f"{d}/webhooks",
            json={"url": "http://127.0.0.1:9/never", "events": ["schedule.paused"]},
            headers=owner,
        )
        ds["webhook_id"] = hook.json()["id"]
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
        url = path.format(dataset_id=ds["id"], job_id=ds["job_id"], webhook_id=ds["webhook_id"])
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
            dataset_id=ds["id"],
            username="x",
            token_id=ds["job_id"],
            webhook_id=ds["job_id"],
            schedule_id=ds["job_id"],
        )
        r = clients["site_admin"].post(url, data={}, follow_redirects=False)
        if route.endswith("/upload"):  # a form that is not multipart is refused before it is read
            assert r.status_code == 400, (route, r.status_code)
            continue
        assert r.status_code == 403 and "security token" in r.text, (route, r.status_code)


# Each form posted (with the session's CSRF token) by every visitor on every
# dataset, with a body that passes the form's own validation and is harmless
# once the permission check lets it through: it names a branch, tag, user or
# token that does not exist, or repeats what is there, or misses a
# confirmation. ``ALLOWED``: the statuses a visitor the check lets through
# may get (the page again with the error, a redirect, or the 404 of the
# missing target where the handler does not render one); a refused visitor
# gets 403 (can see the dataset), 404 (cannot), or the sign-in page.
NO_ID = "00000000-0000-4000-8000-0000000000aa"  # no webhook's, no schedule's
PROBES: dict[str, tuple[dict[str, str], str, frozenset[int]]] = {
    "/datasets": ({"name": "", "visibility": "private"}, "/datasets", frozenset({422})),
    f"{D}/settings": ({"visibility": "same"}, f"{D}/settings", frozenset({303})),
    f"{D}/permissions": (
        {"username": "nobody-at-all", "role": "read"},
        f"{D}/permissions",
        frozenset({404}),
    ),
    f"{D}/permissions/{{username}}/delete": (
        {},
        f"{D}/permissions/nobody-at-all/delete",
        frozenset({404}),
    ),
    f"{D}/delete": ({"confirm": "not its name"}, f"{D}/delete", frozenset({422})),
    f"{D}/webhooks": (
        {"url": "ftp://nobody-at-all", "events": "commit"},
        f"{D}/webhooks",
        frozenset({422}),
    ),
    f"{D}/webhooks/{{webhook_id}}/delete": ({}, f"{D}/webhooks/{NO_ID}/delete", frozenset({404})),
    f"{D}/webhooks/{{webhook_id}}/test": ({}, f"{D}/webhooks/{NO_ID}/test", frozenset({404})),
    f"{D}/schedules": (
        {"url": "ftp://nobody-at-all", "cron": "0 6 * * *"},
        f"{D}/schedules",
        frozenset({422}),
    ),
    f"{D}/schedules/{{schedule_id}}/pause": ({}, f"{D}/schedules/{NO_ID}/pause", frozenset({404})),
    f"{D}/schedules/{{schedule_id}}/run": ({}, f"{D}/schedules/{NO_ID}/run", frozenset({404})),
    f"{D}/schedules/{{schedule_id}}/delete": (
        {},
        f"{D}/schedules/{NO_ID}/delete",
        frozenset({404}),
    ),
    f"{D}/branches": ({"name": "bad name!", "from": "main"}, f"{D}/branches", frozenset({422})),
    f"{D}/tags": ({"name": "bad name!", "from": "main"}, f"{D}/tags", frozenset({422})),
    # the default branch cannot be deleted (409); protecting main again changes nothing
    f"{D}/branches/{{name:path}}/delete": ({}, f"{D}/branches/main/delete", frozenset({409})),
    f"{D}/branches/{{name:path}}/protect": (
        {"protected": "true"},
        f"{D}/branches/main/protect",
        frozenset({303}),
    ),
    f"{D}/tags/{{name:path}}/delete": ({}, f"{D}/tags/nobody-at-all/delete", frozenset({404})),
    f"{D}/merge": (
        {"source": "main", "target": "nobody-at-all"},
        f"{D}/merge",
        frozenset({404}),
    ),
    f"{D}/upload": ({}, f"{D}/upload", frozenset({400})),  # multipart without a file
    "/account/tokens": ({"name": ""}, "/account/tokens", frozenset({422})),
    "/account/tokens/{token_id}/delete": (
        {},
        "/account/tokens/00000000-0000-4000-8000-000000000000/delete",
        frozenset({404}),
    ),
    "/account/password": (
        {"current_password": "wrong-password", "new_password": "another-password-1"},
        "/account/password",
        frozenset({401}),
    ),
    "/admin/users": (
        {"username": "bad name!", "password": "password-1"},
        "/admin/users",
        frozenset({422}),
    ),
    "/admin/users/{username}": ({}, "/admin/users/nobody-at-all", frozenset({404})),
}
# A dataset form's 404 past the permission check names the missing target
# ("nobody-at-all", or the id of no webhook); the 404 of a dataset the
# visitor may not see does not
PAST_THE_CHECK = ("nobody-at-all", NO_ID)
# sign-in is everyone's; sign-out ends only the caller's own session (test_accounts)
NOT_PROBED = {"/signin", "/signout"}


def test_every_form_has_a_probe() -> None:
    assert set(PROBES) | NOT_PROBED == set(FORMS)


def _post(client: Any, path: str, body: dict[str, str], settings: dict[str, str]) -> Any:
    page = client.get("/datasets")
    token = csrf_of(page.text) if 'name="csrf-token"' in page.text else ""
    if path.endswith("/upload"):
        files = {"note": (None, "no file here")}
        return client.post(
            path, files=files, headers={"X-CSRF-Token": token}, follow_redirects=False
        )
    data = {**body, "csrf": token}
    if data.get("visibility") == "same":  # the settings as they are: a no-op save
        data.update(settings)
    return client.post(path, data=data, follow_redirects=False)


@pytest.mark.parametrize("route", sorted(PROBES))
def test_each_form_lets_in_exactly_whom_its_need_says(visitors: Any, route: str) -> None:
    clients, datasets = visitors
    body, path, allowed = PROBES[route]
    need = FORMS[route].split(" ")[0]
    need = {"write": "user+write", "admin": "user+admin", "read": "user+read"}.get(need, need)
    wrong = []
    for visibility, ds in datasets.items():
        url = path.format(dataset_id=ds["id"])
        settings = {
            "name": ds["name"],
            "description": ds.get("description") or "",
            "visibility": visibility,
        }
        for visitor in VISITORS:
            want = expected(need, visitor, visibility)
            r = _post(clients[visitor], url, body, settings)
            got = outcome(r)
            past = any(m in r.text for m in PAST_THE_CHECK) or not route.startswith(D)
            if want == "200":
                ok = r.status_code in allowed and (r.status_code != 404 or past)
            else:
                ok = got == want and (got != "404" or not past)
            if not ok:
                wrong.append(f"{visitor} on {visibility}: expected {want}, got {got}")
    assert not wrong, "\n".join(wrong)

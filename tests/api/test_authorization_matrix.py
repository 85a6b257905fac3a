"""Every REST route × every kind of caller × a public, an internal and a
private dataset (issue 15, "Tests that attack the whole surface").

The routes come from the app's route table: a route without an entry in
``DATASET_ROUTES`` or ``OTHER_ROUTES`` fails ``test_every_route_has_an_entry``.
Each entry says what the route needs (``read``, ``write`` or ``admin`` on
the dataset, a signed-in ``user``, a ``site`` administrator, or nothing) and
how to make a request that succeeds when allowed. The expected outcome of
each (route, caller, dataset) comes from one function, ``expected``:

- ``ok``: anything but a refusal (the request may still be 409 or 422 for
  its own reasons);
- ``401``: unauthorized or bad token;
- ``403``: the caller sees the dataset but lacks the role or the token scope;
- ``404``: the dataset (or the job) does not exist for this caller.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest

from tests.conftest import import_csv, make_dataset, make_user, method_paths

LEVEL = {"read": 1, "write": 2, "admin": 3}
CALLERS = (
    "anonymous",
    "stranger",
    "reader",
    "writer",
    "dataset_admin",
    "site_admin",
    "read_token",
    "other_dataset_token",
    "disabled_user",
    "expired_token",
)
VISIBILITIES = ("public", "internal", "private")
NOT_VISIBLE = {"dataset_not_found", "job_not_found"}
UNAUTHENTICATED = {"unauthorized", "bad_token"}


@dataclass
class Case:
    """A request that succeeds when ``need`` is met; ``setup(world, dataset)``
    prepares what it consumes and returns values for the path and body."""

    need: str
    path: str
    body: Any = None
    files: Any = None
    setup: Callable[[World, dict[str, Any]], dict[str, str]] | None = None


@dataclass
class World:
    client: Any
    headers: dict[str, dict[str, str]]
    datasets: dict[str, dict[str, Any]]
    owner: dict[str, str]
    job: dict[str, str] = field(default_factory=dict)


def _branch(w: World, ds: dict[str, Any]) -> dict[str, str]:
    name = f"b-{uuid.uuid4().hex[:8]}"
    r = w.client.post(
        f"/api/v1/datasets/{ds['id']}/branches",
        json={"name": name, "from": "main"},
        headers=w.owner,
    )
    assert r.status_code == 201, r.text
    return {"name": name, "head": r.json()["commit_id"]}


def _tag(w: World, ds: dict[str, Any]) -> dict[str, str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    r = w.client.post(
        f"/api/v1/datasets/{ds['id']}/tags", json={"name": name, "from": "main"}, headers=w.owner
    )
    assert r.status_code == 201, r.text
    return {"name": name}


def _fresh(w: World, ds: dict[str, Any]) -> dict[str, str]:
    """A new dataset like ``ds`` (same visibility and roles), for deleting."""
    new = _make(w.client, w.owner, ds["visibility"], w.headers)
    return {"dataset_id": new["id"]}


def _granted(w: World, ds: dict[str, Any]) -> dict[str, str]:
    r = w.client.put(
        f"/api/v1/datasets/{ds['id']}/permissions/matrix-target",
        json={"role": "read"},
        headers=w.owner,
    )
    assert r.status_code == 200, r.text
    return {}


def _webhook(w: World, ds: dict[str, Any]) -> dict[str, str]:
    r = w.client.post(
        f"/api/v1/datasets/{ds['id']}/webhooks",
        json={"url": "http://127.0.0.1:9/matrix", "events": ["schedule.paused"]},
        headers=w.owner,
    )
    assert r.status_code == 201, r.text
    return {"webhook_id": r.json()["id"]}


def _schedule(w: World, ds: dict[str, Any]) -> dict[str, str]:
    """The dataset's schedule for reading, pausing and running (one: a
    dataset may have 20)."""
    if "schedule_id" not in ds:
        ds["schedule_id"] = _new_schedule(w, ds)["schedule_id"]
    return {"schedule_id": ds["schedule_id"]}


def _new_schedule(w: World, ds: dict[str, Any]) -> dict[str, str]:
    r = w.client.post(
        f"/api/v1/datasets/{ds['id']}/schedules",
        json={"url": "https://example.invalid/m.csv", "cron": "0 6 1 1 *", "branch": "side"},
        headers=w.owner,
    )
    assert r.status_code == 201, r.text
    return {"schedule_id": r.json()["id"]}


D = "/api/v1/datasets/{dataset_id}"
W = f"{D}/webhooks/{{webhook_id}}"
S = f"{D}/schedules/{{schedule_id}}"
DATASET_ROUTES: dict[tuple[str, str], Case] = {
    ("GET", f"{D}"): Case("read", D),
    ("PATCH", f"{D}"): Case("admin", D, body={"description": "m"}),
    ("DELETE", f"{D}"): Case("admin", D, setup=_fresh),
    ("GET", f"{D}/permissions"): Case("admin", f"{D}/permissions"),
    ("PUT", f"{D}/permissions/{{username}}"): Case(
        "admin", f"{D}/permissions/matrix-target", body={"role": "read"}
    ),
    ("DELETE", f"{D}/permissions/{{username}}"): Case(
        "admin", f"{D}/permissions/matrix-target", setup=_granted
    ),
    ("GET", f"{D}/refs"): Case("read", f"{D}/refs"),
    ("POST", f"{D}/branches"): Case(
        "write", f"{D}/branches", body=lambda: {"name": f"n-{uuid.uuid4().hex[:8]}", "from": "main"}
    ),
    ("POST", f"{D}/tags"): Case(
        "write", f"{D}/tags", body=lambda: {"name": f"n-{uuid.uuid4().hex[:8]}", "from": "main"}
    ),
    ("GET", f"{D}/branches/{{name:path}}"): Case("read", f"{D}/branches/main"),
    ("GET", f"{D}/tags/{{name:path}}"): Case("read", f"{D}/tags/v1"),
    ("PATCH", f"{D}/branches/{{name:path}}"): Case(
        "write",
        f"{D}/branches/{{name}}",
        body=lambda v: {"commit_id": "main", "expected_commit_id": v["head"]},
        setup=_branch,
    ),
    ("DELETE", f"{D}/branches/{{name:path}}"): Case(
        "write", f"{D}/branches/{{name}}", setup=_branch
    ),
    ("DELETE", f"{D}/tags/{{name:path}}"): Case("admin", f"{D}/tags/{{name}}", setup=_tag),
    ("GET", f"{D}/refs/{{name:path}}/log"): Case("read", f"{D}/refs/main/log"),
    ("GET", f"{D}/refs/{{ref:path}}/tables"): Case("read", f"{D}/refs/main/tables"),
    ("GET", f"{D}/refs/{{ref:path}}/stats"): Case("read", f"{D}/refs/main/stats"),
    ("GET", f"{D}/refs/{{ref:path}}/quality"): Case("read", f"{D}/refs/main/quality"),
    ("GET", f"{D}/quality"): Case("read", f"{D}/quality"),
    ("PUT", f"{D}/quality"): Case("admin", f"{D}/quality", body={"rules": [], "threshold": 0}),
    ("GET", f"{D}/refs/{{ref:path}}/data"): Case("read", f"{D}/refs/main/data"),
    # webhooks send the dataset's activity where they say: its admins' alone
    ("POST", f"{D}/webhooks"): Case(
        "admin",
        f"{D}/webhooks",
        body={"url": "http://127.0.0.1:9/matrix", "events": ["schedule.paused"]},
    ),
    ("GET", f"{D}/webhooks"): Case("admin", f"{D}/webhooks"),
    ("GET", W): Case("admin", W, setup=_webhook),
    ("DELETE", W): Case("admin", W, setup=_webhook),
    ("GET", f"{W}/deliveries"): Case("admin", f"{W}/deliveries", setup=_webhook),
    ("POST", f"{W}/test"): Case("admin", f"{W}/test", setup=_webhook),
    # schedules name their sources: the dataset's writers'
    ("POST", f"{D}/schedules"): Case(
        "write",
        f"{D}/schedules",
        body={"url": "https://example.invalid/m.csv", "cron": "0 6 1 1 *", "branch": "side"},
    ),
    ("GET", f"{D}/schedules"): Case("write", f"{D}/schedules"),
    ("GET", S): Case("write", S, setup=_schedule),
    ("PATCH", S): Case("write", S, body={"paused": True}, setup=_schedule),
    ("DELETE", S): Case("write", S, setup=_new_schedule),
    ("POST", f"{S}/runs"): Case("write", f"{S}/runs", setup=_schedule),
    ("POST", f"{D}/refs/{{branch:path}}/uploads"): Case(
        "write", f"{D}/refs/side/uploads", files=lambda: {"file": ("m.csv", b"id,v\n1,a\n")}
    ),
    ("POST", f"{D}/refs/{{branch:path}}/imports"): Case(
        "write", f"{D}/refs/side/imports", body={"url": "https://example.invalid/m.csv"}
    ),
    ("GET", f"{D}/commits"): Case("read", f"{D}/commits"),
    ("GET", f"{D}/commits/{{commit_ref}}"): Case("read", f"{D}/commits/main"),
    ("GET", f"{D}/merge-base/{{spec:path}}"): Case("read", f"{D}/merge-base/main...side"),
    ("GET", f"{D}/compare/{{spec:path}}"): Case("read", f"{D}/compare/v1...main"),
    ("POST", f"{D}/merges"): Case(
        "write", f"{D}/merges", body={"source": "main", "target": "side"}
    ),
    ("POST", f"{D}/reverts"): Case(
        "write", f"{D}/reverts", body={"branch": "side", "commit": "main"}
    ),
    ("GET", f"{D}/refs/{{ref:path}}/export"): Case("read", f"{D}/refs/main/export?format=csv"),
    ("HEAD", f"{D}/refs/{{ref:path}}/export"): Case("read", f"{D}/refs/main/export?format=csv"),
    ("POST", f"{D}/refs/{{ref:path}}/export-links"): Case(
        "read+user", f"{D}/refs/main/export-links", body={"expires_in_seconds": 60}
    ),
    # a job of the dataset: read to see it, write to cancel it
    ("GET", "/api/v1/jobs/{job_id}"): Case("read+user", "/api/v1/jobs/{job_id}"),
    ("GET", "/api/v1/jobs/{job_id}/events"): Case("read+user", "/api/v1/jobs/{job_id}/events"),
    ("POST", "/api/v1/jobs/{job_id}/cancel"): Case("write", "/api/v1/jobs/{job_id}/cancel"),
}

# routes of no dataset: who may call them
OTHER_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "anyone",
    ("GET", "/readyz"): "anyone",
    ("GET", "/metrics"): "anyone",
    ("POST", "/api/v1/auth/login"): "anyone",
    ("GET", "/api/v1/users/me"): "user",
    ("POST", "/api/v1/users/me/password"): "full user",
    ("GET", "/api/v1/users"): "site",
    ("POST", "/api/v1/users"): "site",
    ("PATCH", "/api/v1/users/{username}"): "site",
    ("POST", "/api/v1/tokens"): "user",
    ("GET", "/api/v1/tokens"): "user",
    ("DELETE", "/api/v1/tokens/{token_id}"): "user",
    ("POST", "/api/v1/datasets"): "full user",
    ("GET", "/api/v1/datasets"): "optional",
    ("GET", "/api/v1/search"): "optional",
    ("POST", "/api/v1/datasets/{dataset_id}/restore"): "site",
    ("POST", "/api/v1/admin/fsck"): "site",
    ("POST", "/api/v1/admin/gc"): "site",
    ("GET", "/api/v1/audit"): "site",
    ("GET", "/api/v1/audit/export"): "site",
}


def _api_routes(app: Any) -> set[tuple[str, str]]:
    service = ("/healthz", "/readyz", "/metrics")
    return {(m, p) for m, p in method_paths(app) if p.startswith("/api/") or p in service}


def test_every_route_has_an_entry(app: Any) -> None:
    routes = _api_routes(app)
    missing = routes - set(DATASET_ROUTES) - set(OTHER_ROUTES)
    assert not missing, f"routes without an authorization entry: {sorted(missing)}"
    stale = (set(DATASET_ROUTES) | set(OTHER_ROUTES)) - routes
    assert not stale, f"entries for routes that no longer exist: {sorted(stale)}"


# --------------------------------------------------------------------------- the world


def _make(
    client: Any, owner: dict[str, str], visibility: str, headers: dict[str, dict[str, str]]
) -> dict[str, Any]:
    ds = make_dataset(client, owner, visibility=visibility)
    for caller, role in (("reader", "read"), ("writer", "write"), ("disabled_user", "write")):
        name = headers[caller]["X-Test-Username"]
        r = client.put(
            f"/api/v1/datasets/{ds['id']}/permissions/{name}", json={"role": role}, headers=owner
        )
        assert r.status_code == 200, r.text
    return ds


@pytest.fixture(scope="module")
def world(client: Any, admin: dict[str, str], worker: Any) -> World:
    from core.config import get_settings

    owner = make_user(client, admin)
    headers: dict[str, dict[str, str]] = {
        "anonymous": {},
        "stranger": make_user(client, admin),
        "reader": make_user(client, admin),
        "writer": make_user(client, admin),
        "dataset_admin": owner,
        "site_admin": admin,
        "disabled_user": make_user(client, admin),
    }
    if client.get("/api/v1/users", headers=admin).status_code == 200 and not any(
        u["username"] == "matrix-target"
        for u in client.get("/api/v1/users", headers=admin).json()["items"]
    ):
        client.post(
            "/api/v1/users",
            json={"username": "matrix-target", "password": "matrix-target"},
            headers=admin,
        )
    datasets = {v: _make(client, owner, v, headers) for v in VISIBILITIES}
    other = make_dataset(client, owner)
    for ds in datasets.values():
        job = import_csv(client, owner, ds["id"], b"id,v\n1,a\n2,b\n")
        assert job["state"] == "succeeded", job
        ds["job_id"] = job["id"]
        d = f"/api/v1/datasets/{ds['id']}"
        client.post(f"{d}/tags", json={"name": "v1", "from": "main"}, headers=owner)
        assert import_csv(client, owner, ds["id"], b"id,v\n1,a\n2,c\n")["state"] == "succeeded"
        client.post(f"{d}/branches", json={"name": "side", "from": "main"}, headers=owner)

    def token(**body: Any) -> dict[str, str]:
        r = client.post("/api/v1/tokens", json={"name": "m", **body}, headers=owner)
        assert r.status_code == 201, r.text
        return {"Authorization": f"Bearer {r.json()['token']}"}

    headers["read_token"] = token(scopes=["read"])
    headers["other_dataset_token"] = token(datasets=[other["id"]])
    name = headers["disabled_user"]["X-Test-Username"]
    assert (
        client.patch(f"/api/v1/users/{name}", json={"disabled": True}, headers=admin).status_code
        == 200
    )
    me = client.get("/api/v1/users/me", headers=headers["reader"]).json()
    now = int(time.time())
    expired = jwt.encode(
        {"sub": me["id"], "ver": 0, "jti": str(uuid.uuid4()), "iat": now - 7200, "exp": now - 3600},
        get_settings().key("jwt"),
        algorithm="HS256",
    )
    headers["expired_token"] = {"Authorization": f"Bearer {expired}"}
    return World(client, headers, datasets, owner)


# --------------------------------------------------------------------------- expectations


def _role(caller: str, visibility: str) -> int | str:
    """The role a caller holds on a dataset of this visibility, or the refusal it gets."""
    if caller in ("disabled_user", "expired_token"):
        return "401"
    implied = (
        1 if visibility == "public" or (visibility == "internal" and caller != "anonymous") else 0
    )
    if caller == "other_dataset_token":  # its user is the dataset's admin; the token is not for it
        return 1 if visibility == "public" else "403"
    held = {"reader": 1, "writer": 2, "dataset_admin": 3, "site_admin": 3, "read_token": 1}
    return max(implied, held.get(caller, 0))


def expected(need: str, caller: str, visibility: str) -> str:
    role = _role(caller, visibility)
    signed_in_needed = need != "read"
    if role == "401":
        return "401"
    if signed_in_needed and caller == "anonymous":
        return "401"
    if role == "403":
        return "403"
    assert isinstance(role, int)
    if role == 0:
        return "404"
    level = LEVEL[need.split("+")[0]]
    return "ok" if role >= level else "403"


def outcome(r: Any) -> str:
    code = ""
    if r.request.method == "HEAD":  # no body to read the code from
        code = {401: "unauthorized", 404: "dataset_not_found"}.get(r.status_code, "")
    elif r.headers.get("content-type", "").startswith("application/problem+json"):
        code = r.json().get("code", "")
    if r.status_code == 401 and code in UNAUTHENTICATED:
        return "401"
    if r.status_code == 403:
        return "403"
    if r.status_code == 404 and code in NOT_VISIBLE:
        return "404"
    if r.status_code >= 500:
        return f"5xx {r.status_code}: {r.text[:200]}"
    return "ok"


@pytest.mark.parametrize("route", sorted(DATASET_ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_dataset_routes(world: World, route: tuple[str, str]) -> None:
    method, _ = route
    case = DATASET_ROUTES[route]
    wrong = []
    for visibility, ds in world.datasets.items():
        for caller in CALLERS:
            values = case.setup(world, ds) if case.setup else {}
            path = case.path.format(
                dataset_id=values.get("dataset_id", ds["id"]),
                job_id=ds["job_id"],
                name=values.get("name", ""),
                webhook_id=values.get("webhook_id", ""),
                schedule_id=values.get("schedule_id", ""),
            )
            body = case.body
            if callable(body):
                body = body(values) if body.__code__.co_argcount else body()
            files = case.files() if callable(case.files) else case.files
            kw: dict[str, Any] = {"headers": world.headers[caller]}
            if files is not None:
                kw["files"] = files
            elif body is not None:
                kw["json"] = body
            r = world.client.request(method, path, **kw)
            want, got = expected(case.need, caller, visibility), outcome(r)
            if want != got:
                wrong.append(
                    f"{caller} on {visibility}: expected {want}, got {got} ({r.status_code})"
                )
    assert not wrong, "\n".join(wrong)


def _other_expected(need: str, caller: str) -> str:
    if need == "anyone":
        return "ok"
    if need == "optional":  # anonymous is fine; a dead token is not
        return "401" if caller in ("disabled_user", "expired_token") else "ok"
    if caller in ("anonymous", "disabled_user", "expired_token"):
        return "401"
    if need == "site":
        return "ok" if caller == "site_admin" else "403"
    if need == "full user" and caller in ("read_token", "other_dataset_token"):
        return "403"
    return "ok"


def _other_request(world: World, method: str, path: str, caller: str) -> Any:
    c, h, admin = world.client, world.headers[caller], world.headers["site_admin"]
    if path == "/api/v1/auth/login":
        return c.post(path, json={"username": "nobody", "password": "whatever-1"})
    if path == "/api/v1/users/me/password":
        body = {"current_password": "not-the-password", "new_password": "a-new-password"}
        return c.post(path, json=body, headers=h)  # 401 bad_credentials: allowed, but wrong
    if path == "/api/v1/users" and method == "POST":
        body = {"username": f"m-{uuid.uuid4().hex[:8]}", "password": "long-enough"}
        return c.post(path, json=body, headers=h)
    if path == "/api/v1/users/{username}":
        return c.patch("/api/v1/users/matrix-target", json={"is_admin": False}, headers=h)
    if path == "/api/v1/tokens" and method == "POST":
        return c.post(path, json={"name": "m"}, headers=h)
    if path == "/api/v1/tokens/{token_id}":
        return c.delete(f"/api/v1/tokens/{uuid.uuid4()}", headers=h)
    if path == "/api/v1/datasets" and method == "POST":
        return c.post(path, json={"name": f"m-{uuid.uuid4().hex[:8]}"}, headers=h)
    if path == "/api/v1/datasets/{dataset_id}/restore":
        ds = make_dataset(c, admin)
        c.delete(f"/api/v1/datasets/{ds['id']}", headers=admin)
        return c.post(f"/api/v1/datasets/{ds['id']}/restore", headers=h)
    if path == "/api/v1/admin/gc":
        return c.post(path, json={"dry_run": True}, headers=h)
    if path == "/api/v1/admin/fsck":
        return c.post(path, json={}, headers=h)
    return c.request(method, path, headers=h)


@pytest.mark.parametrize("route", sorted(OTHER_ROUTES), ids=lambda r: f"{r[0]} {r[1]}")
def test_other_routes(world: World, route: tuple[str, str]) -> None:
    method, path = route
    wrong = []
    for caller in CALLERS:
        r = _other_request(world, method, path, caller)
        want, got = _other_expected(OTHER_ROUTES[route], caller), outcome(r)
        if path == "/api/v1/users/me/password" and r.status_code == 401:
            got = "ok" if r.json()["code"] == "bad_credentials" else got
        if path == "/api/v1/tokens/{token_id}" and caller in ("read_token", "other_dataset_token"):
            want = "403"  # a limited token revokes only itself
        if want != got:
            wrong.append(f"{caller}: expected {want}, got {got} ({r.status_code})")
    assert not wrong, "\n".join(wrong)

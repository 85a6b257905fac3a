"""The JSON answers of every REST route, down to key order and how values
are written, against a golden file (tests/api/response_shapes.json).

Response models (decision 0018) describe these answers in /openapi.json; this
test is what keeps them from changing a body: a key dropped or added, an
optional key that appears as null, a time written with ``Z`` instead of
``+00:00``. Ids and times differ from run to run, so values are reduced to
their kind (``uuid``, ``commit``, ``time+00:00``, ``int`` ...). After an
intended change to an answer, regenerate with ``DSA_WRITE_SHAPES=1`` and
review the diff.
"""

from __future__ import annotations

import io
import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Match

from tests.conftest import app_routes, import_csv, make_dataset, make_user, upload

GOLDEN = Path(__file__).with_name("response_shapes.json")

_KINDS = [
    ("uuid", re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")),
    ("commit", re.compile(r"[0-9a-f]{64}")),
    ("time+00:00", re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00")),
    ("timeZ", re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")),
]


def shape(v: Any) -> Any:
    """``v`` with every id, time, text and number replaced by its kind;
    objects as ``[[key, shape], ...]`` so that key order counts."""
    if isinstance(v, dict):
        return [[k, shape(x)] for k, x in v.items()]
    if isinstance(v, list):
        return [shape(x) for x in v[:2]]
    if isinstance(v, str):
        return next((k for k, rx in _KINDS if rx.fullmatch(v)), "str")
    if v is None:
        return None
    return type(v).__name__


def _raw(r: Any) -> Any:
    return json.loads(r.text) if r.content else None


@pytest.fixture(scope="module")
def answers(client: Any, admin: dict[str, str], worker: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    raw: dict[str, tuple[str, str, Any]] = {}

    def keep(name: str, r: Any, status: int) -> Any:
        assert r.status_code == status, (name, r.text)
        out[name] = {"status": r.status_code, "body": shape(_raw(r))}
        raw[name] = (r.request.method, r.request.url.path, _raw(r))
        return _raw(r)

    c, h = client, admin
    keep("GET /healthz", c.get("/healthz"), 200)
    keep("GET /readyz", c.get("/readyz"), 200)
    r = c.post("/api/v1/auth/login", json={"username": "admin", "password": "x" * 3})
    assert r.status_code == 401
    ana = make_user(c, h)
    keep("GET /users/me", c.get("/api/v1/users/me", headers=ana), 200)
    r = c.post(
        "/api/v1/users",
        json={"username": "shape-" + os.urandom(4).hex(), "password": "correct horse"},
        headers=h,
    )
    keep("POST /users", r, 201)
    keep("GET /users", c.get("/api/v1/users", headers=h), 200)
    r = c.patch(f"/api/v1/users/{r.json()['username']}", json={"disabled": True}, headers=h)
    keep("PATCH /users/{username}", r, 200)
    r = c.post(
        "/api/v1/tokens",
        json={"name": "t3", "scopes": ["read"], "datasets": [str(uuid.uuid4())]},
        headers=ana,
    )
    keep("POST /tokens (scoped)", r, 201)
    keep("POST /tokens", c.post("/api/v1/tokens", json={"name": "t"}, headers=ana), 201)
    r = c.post("/api/v1/tokens", json={"name": "t2", "expires_in_days": 3}, headers=ana)
    keep("POST /tokens (expiring)", r, 201)
    keep("GET /tokens", c.get("/api/v1/tokens", headers=ana), 200)

    ds = make_dataset(c, h, primary_key=["id"], description="d")
    d = f"/api/v1/datasets/{ds['id']}"
    keep("GET /datasets", c.get("/api/v1/datasets", params={"q": ds["name"]}, headers=h), 200)
    keep("GET /datasets/{id}", c.get(d, headers=h), 200)
    keep("PATCH /datasets/{id}", c.patch(d, json={"primary_key": None}, headers=h), 200)
    c.patch(d, json={"primary_key": ["id"]}, headers=h)
    name = ana["X-Test-Username"]
    keep("PUT permissions", c.put(f"{d}/permissions/{name}", json={"role": "read"}, headers=h), 200)
    keep("GET permissions", c.get(f"{d}/permissions", headers=h), 200)

    job = import_csv(c, h, ds["id"], b"id,name,at\n1,a,2024-01-02T03:04:05Z\n2,b,\n")
    assert job["state"] == "succeeded", job
    r = upload(c, h, ds["id"], b"id,name,at\n1,a,2024-01-02T03:04:05Z\n2,c,\n3,d,\n")
    keep("POST uploads", r, 202)
    from tests.conftest import wait_job

    job2 = wait_job(c, h, r.json()["job_id"])
    keep("GET /jobs/{id}", c.get(f"/api/v1/jobs/{job2['id']}", headers=h), 200)
    r = upload(c, h, ds["id"], b"id\n", filename="x.unknown")
    assert r.status_code == 415
    r = upload(c, h, ds["id"], b"\xff\xfe\x00garbage", filename="bad.csv")
    failed = wait_job(c, h, r.json()["job_id"])
    assert failed["state"] == "failed"
    keep("GET /jobs/{id} (failed)", c.get(f"/api/v1/jobs/{failed['id']}", headers=h), 200)

    keep("GET refs", c.get(f"{d}/refs", headers=h), 200)
    first = job["commit_id"]
    keep(
        "POST branches",
        c.post(f"{d}/branches", json={"name": "dev", "from": first}, headers=h),
        201,
    )
    keep(
        "POST tags",
        c.post(f"{d}/tags", json={"name": "v1", "from": first, "message": "m"}, headers=h),
        201,
    )
    keep("GET branches/{name}", c.get(f"{d}/branches/dev", headers=h), 200)
    keep("GET tags/{name}", c.get(f"{d}/tags/v1", headers=h), 200)
    keep(
        "PATCH branches/{name}",
        c.patch(f"{d}/branches/dev", json={"protected": True}, headers=h),
        200,
    )
    c.patch(f"{d}/branches/dev", json={"protected": False}, headers=h)
    keep("GET refs/{name}/log", c.get(f"{d}/refs/dev/log?per_page=2", headers=h), 200)

    keep("GET commits", c.get(f"{d}/commits?per_page=1", headers=h), 200)
    keep("GET commits?all", c.get(f"{d}/commits?all=true", headers=h), 200)
    keep("GET commits/{ref}", c.get(f"{d}/commits/main", headers=h), 200)
    keep("GET merge-base", c.get(f"{d}/merge-base/main...dev", headers=h), 200)

    keep("GET tables", c.get(f"{d}/refs/main/tables", headers=h), 200)
    keep("GET data", c.get(f"{d}/refs/main/data", headers=h), 200)
    r = c.get(f"{d}/refs/main/data", params={"filter": "id > 1", "sort": "-id"}, headers=h)
    keep("GET data (filter, sort)", r, 200)
    keep("GET compare", c.get(f"{d}/compare/v1...main", headers=h), 200)
    keep("GET compare (limit=0)", c.get(f"{d}/compare/v1...main?limit=0", headers=h), 200)

    r = c.post(f"{d}/refs/main/export-links", json={"format": "csv"}, headers=h)
    keep("POST export-links", r, 201)

    # merges: up to date, fast-forward, three-way; a revert
    m = f"{d}/merges"
    keep(
        "POST merges (up to date)",
        c.post(m, json={"source": "v1", "target": "main"}, headers=h),
        200,
    )
    keep(
        "POST merges (fast-forward)",
        c.post(m, json={"source": "main", "target": "dev"}, headers=h),
        200,
    )
    buf = io.BytesIO(b"id,name,at\n1,a,2024-01-02T03:04:05Z\n2,c,\n3,d,\n4,e,\n")
    assert import_csv(c, h, ds["id"], buf.getvalue(), branch="dev")["state"] == "succeeded"
    buf = b"id,name,at\n1,z,2024-01-02T03:04:05Z\n2,c,\n3,d,\n"
    assert import_csv(c, h, ds["id"], buf)["state"] == "succeeded"
    keep(
        "POST merges (three-way)",
        c.post(m, json={"source": "dev", "target": "main"}, headers=h),
        200,
    )
    head = c.get(f"{d}/branches/main", headers=h).json()["commit_id"]
    keep(
        "POST reverts",
        c.post(f"{d}/reverts", json={"branch": "main", "commit": head[:12]}, headers=h),
        201,
    )

    r = c.post(f"{d}/refs/main/imports", json={"url": "https://example.invalid/x.csv"}, headers=h)
    keep("POST imports", r, 202)
    r = c.post(f"/api/v1/jobs/{r.json()['job_id']}/cancel", headers=h)
    if r.status_code == 202:  # else it ended already (a fast failure): 409
        keep("POST jobs/{id}/cancel", r, 202)
    keep("DELETE tags/{name}", c.delete(f"{d}/tags/v1", headers=h), 204)
    return {"shapes": out, "raw": raw}


def test_answers_keep_their_shape(answers: dict[str, Any]) -> None:
    shapes = answers["shapes"]
    got = {k: v for k, v in shapes.items() if k != "POST jobs/{id}/cancel"}
    if os.environ.get("DSA_WRITE_SHAPES"):
        lines = [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in got.items()]
        GOLDEN.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # a line a route
    want = json.loads(GOLDEN.read_text())
    assert set(got) == set(want)
    for name in want:
        assert got[name] == want[name], name
    if "POST jobs/{id}/cancel" in shapes:
        cancel = shapes["POST jobs/{id}/cancel"]["body"]
        assert [k for k, _ in cancel] == [k for k, _ in want["GET /jobs/{id}"]["body"]]


def _route(app: Any, method: str, path: str) -> APIRoute:
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    for route in app_routes(app):
        if route.matches(scope)[0] == Match.FULL:
            return route
    raise AssertionError(f"no route for {method} {path}")


def test_answers_are_what_the_response_models_say(app: Any, answers: dict[str, Any]) -> None:
    """Every answer validates against its route's response model and comes
    back from it unchanged: the model, as /openapi.json shows it, neither
    misses a key nor declares one the answer lacks (also for the routes
    that send bytes they serialise themselves: data pages, compare, uploads)."""
    for name, (method, path, body) in answers["raw"].items():
        route = _route(app, method, path)
        if body is None:
            assert route.status_code == 204, name
            continue
        model = route.response_model
        assert model is not None, f"{name}: no response model"
        back = model.model_validate(body).model_dump(mode="json", by_alias=True, exclude_unset=True)
        assert json.dumps(back) == json.dumps(body), name


# Routes that answer something other than a JSON object
NOT_JSON = {
    ("GET", "/metrics"),
    ("GET", "/api/v1/jobs/{job_id}/events"),
    ("GET", "/api/v1/audit/export"),
    ("GET", "/api/v1/datasets/{dataset_id}/refs/{ref:path}/export"),
    ("HEAD", "/api/v1/datasets/{dataset_id}/refs/{ref:path}/export"),
}


def test_every_json_route_declares_its_answer(app: Any) -> None:
    missing = []
    for route in app_routes(app):
        if not route.include_in_schema:
            continue
        if not (route.path.startswith("/api/") or route.path in ("/healthz", "/readyz")):
            continue
        for method in route.methods:
            if (method, route.path) in NOT_JSON or route.status_code == 204:
                continue
            if route.response_model is None:
                missing.append(f"{method} {route.path}")
    assert missing == []
    schema = app.openapi()
    answer = schema["paths"]["/api/v1/jobs/{job_id}"]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/JobOut"
    }

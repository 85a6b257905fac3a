"""Every domain error category becomes the same RFC 9457 problem shape."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import BaseModel

from api import errors
from core.errors import (
    BadRequest,
    Conflict,
    DsaError,
    Forbidden,
    Invalid,
    NotFound,
    TooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
)

CASES = [
    (NotFound, 404),
    (Conflict, 409),
    (Invalid, 422),
    (BadRequest, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (TooLarge, 413),
    (UnsupportedMedia, 415),
    (Unavailable, 503),
    (DsaError, 500),
]


class Body(BaseModel):
    n: int


def _app() -> FastAPI:
    app = FastAPI()
    errors.install(app)

    @app.get("/raise/{i}")
    def _raise(i: int) -> None:
        cls, _ = CASES[i]
        raise cls("something precise happened", line=3)

    @app.get("/crash")
    def _crash() -> None:
        raise RuntimeError("secret internals")

    @app.post("/body")
    def _body(body: Body) -> None:
        return None

    return app


@pytest.mark.parametrize("i", range(len(CASES)))
def test_problem_shape_for_every_category(i: int) -> None:
    cls, status = CASES[i]
    r = TestClient(_app()).get(f"/raise/{i}")
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    assert body["type"].startswith("https://") and body["title"] and body["code"]
    assert body["detail"] == "something precise happened" and body["line"] == 3
    assert body["instance"] == f"/raise/{i}"


def test_crashes_hide_internals_and_invalid_bodies_list_fields() -> None:
    c = TestClient(_app(), raise_server_exceptions=False)
    r = c.get("/crash")
    assert r.status_code == 500 and "secret" not in r.text and "Traceback" not in r.text
    r = c.post("/body", json={"n": "x"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "n"
    # unknown paths: a problem document under /api or when JSON is asked for
    # (elsewhere the web UI's HTML error page, tests/ui/test_pages.py)
    r = c.get("/api/no/such/route")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = c.get("/no/such/route", headers={"Accept": "application/json"})
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


def test_a_value_the_database_cannot_store_is_a_400_not_a_500(client: Any) -> None:
    """Found by the fuzzer (issue 15): a NUL character in a sign-in name
    reached PostgreSQL, which refused it, and the answer was a 500."""
    r = client.post("/api/v1/auth/login", json={"username": "a\x00b", "password": "whatever-1"})
    assert r.status_code == 400 and r.json()["code"] == "unstorable_value"
    r = client.get("/api/v1/datasets", params={"q": "x\x00"})
    assert r.status_code == 400

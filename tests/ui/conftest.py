"""Fixtures of the web UI tests: a browser-like client with its own cookie jar."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import ADMIN_PASSWORD


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf-token" content="([0-9a-f]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


def sign_in(c: TestClient, username: str = "admin", password: str = ADMIN_PASSWORD) -> str:
    """Sign ``c`` in through the form; returns the session's CSRF token."""
    page = c.get("/signin")
    r = c.post(
        "/signin",
        data={"username": username, "password": password, "csrf": csrf_of(page.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return csrf_of(c.get("/datasets").text)


@pytest.fixture
def browser_client(app: Any) -> Iterator[TestClient]:
    """In-process client of the whole app with its own cookies (a fresh visitor)."""
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c

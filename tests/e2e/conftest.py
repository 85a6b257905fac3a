"""Fixtures shared by the end-to-end modules: a client of the API process
over real HTTP, and an admin's headers."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import login


@pytest.fixture(scope="module")
def http(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def auth(http: httpx.Client) -> dict[str, str]:
    return login(http)

"""/metrics and the API documentation can be closed (issue 15, "Service
endpoints"); both were open to anyone before."""

from __future__ import annotations

from typing import Any

import pytest

from core.config import Settings, get_settings


def test_metrics_need_the_token_when_one_is_set(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.get("/metrics").status_code == 200  # unset: open, as on a laptop
    monkeypatch.setattr(get_settings(), "metrics_token", "a-long-metrics-token")
    r = client.get("/metrics")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    r = client.get("/metrics", headers={"Authorization": "Bearer a-long-metrics-token"})
    assert r.status_code == 200 and "dsa_http_request_seconds" in r.text


def test_docs_for_signed_in_callers_only(
    app: Any, client: Any, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    from tests.ui.conftest import sign_in

    monkeypatch.setattr(get_settings(), "public_docs", False)
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code == 401, path
        assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
        assert client.get(path, headers=admin).status_code == 200, path
    with TestClient(app, raise_server_exceptions=False) as browser:
        sign_in(browser)
        assert browser.get("/docs").status_code == 200  # the web UI's session will do
        assert browser.get("/openapi.json").status_code == 200
    assert client.get("/healthz").status_code == 200  # probes stay open


def test_a_placeholder_metrics_token_is_refused(tmp_path: Any) -> None:
    s = Settings(jwt_secret="x" * 40, metrics_token="CHANGE-ME-metrics-token", home=tmp_path)
    assert s.secret_problem() and "METRICS" in (s.secret_problem() or "")
    assert (
        Settings(jwt_secret="x" * 40, metrics_token="m" * 20, home=tmp_path).secret_problem()
        is None
    )

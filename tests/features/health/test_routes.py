from __future__ import annotations

from typing import Any

import pytest

from core.config import get_settings
from core.embedded import free_port
from features.health import service


def test_health_and_metrics(client: Any, admin: dict[str, str]) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {"postgres": "ok", "redis": "ok", "objects": "ok"}
    client.get("/api/v1/users/me", headers=admin)
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert 'dsa_http_request_seconds_count{method="GET",route="/api/v1/users/me"' in metrics.text


def test_readyz_is_503_when_redis_is_down(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = get_settings().model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    monkeypatch.setattr(service, "get_settings", lambda: broken)
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unavailable" and body["checks"]["redis"].startswith("error")
    assert body["checks"]["postgres"] == "ok"

"""Liveness and readiness checks."""

from __future__ import annotations

from typing import Any

import redis

from core import db
from core.config import get_settings
from core.storage import get_store


def readiness() -> tuple[bool, dict[str, Any]]:
    checks: dict[str, Any] = {}
    try:
        with db.transaction() as conn:
            conn.execute("SELECT 1")
        checks["postgres"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        checks["postgres"] = f"error: {exc.__class__.__name__}"
    try:
        url = get_settings().redis_url
        if not url:
            raise RuntimeError("DSA_REDIS_URL is not set")
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        client.ping()
        client.close()
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {exc.__class__.__name__}"
    try:
        get_store().check()
        checks["objects"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["objects"] = f"error: {exc.__class__.__name__}"
    return all(v == "ok" for v in checks.values()), checks


def metrics() -> bytes:
    """The Prometheus text of this node's processes and the installation."""
    from core.metrics import collect

    return collect()

"""Liveness and readiness checks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core import db
from core.config import get_settings
from core.metrics import collect
from core.storage import get_store
from features.jobs import service as jobs_service


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


class _Installation(Collector):
    """Jobs by kind and state and the task queue's length, read at scrape time."""

    def collect(self) -> Iterator[Any]:
        jobs = GaugeMetricFamily(
            "dsa_jobs", "queued and running jobs, by kind and state", labels=["kind", "state"]
        )
        try:
            with db.read() as conn:
                for row in jobs_service.active_counts(conn):
                    jobs.add_metric([row["kind"], row["state"]], row["n"])
        except Exception:  # noqa: BLE001 - a scrape never fails for want of the database
            pass
        yield jobs
        queue = GaugeMetricFamily("dsa_queue_length", "task messages waiting in the broker")
        url = get_settings().redis_url
        if url:
            try:
                client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
                try:
                    queue.add_metric([], client.llen("dsa"))
                finally:
                    client.close()
            except Exception:  # noqa: BLE001
                pass
        yield queue


def metrics() -> bytes:
    """The Prometheus text of this node's processes and the installation."""
    return collect(_Installation())

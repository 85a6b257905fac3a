"""Prometheus metrics an operator alerts on (docs/operations.md, "Metrics").

Counters and histograms live in the process that records them (the API's
requests, the worker's jobs, gc and fsck, every process's object store and
cache). With several processes per node (``dsa up``; uvicorn workers; the
Celery pool) ``PROMETHEUS_MULTIPROC_DIR`` names a directory they all write
to, and ``collect()`` merges them; the API serves them at ``/metrics`` and
a worker at ``DSA_WORKER_METRICS_PORT`` when set. Gauges of the whole
installation (jobs by state, queue length) are read from PostgreSQL and
Redis when scraped, so every scrape of any API process agrees.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

REQUEST_SECONDS = Histogram(
    "dsa_http_request_seconds", "HTTP request latency", ["method", "route", "status"]
)
JOBS_FINISHED = Counter(
    "dsa_jobs_finished_total", "jobs that ended, by kind and final state", ["kind", "state"]
)
JOB_SECONDS = Histogram(
    "dsa_job_seconds",
    "time from a job's claim to its end",
    ["kind", "state"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
IMPORT_ROWS = Counter("dsa_import_rows_total", "rows imported by succeeded imports")
IMPORT_BYTES = Counter("dsa_import_bytes_total", "bytes read by succeeded imports")
GC_RUNS = Counter("dsa_gc_runs_total", "gc runs that finished", ["dry_run"])
GC_FREED = Counter("dsa_gc_freed_bytes_total", "bytes gc deleted")
GC_DELETED = Counter("dsa_gc_deleted_objects_total", "objects gc deleted")
FSCK_PROBLEMS = Gauge(
    "dsa_fsck_problems",
    "problems the last fsck found (0: clean)",
    multiprocess_mode="mostrecent",
)
STORE_ERRORS = Counter("dsa_object_store_errors_total", "object store requests that failed", ["op"])
STORE_SECONDS = Histogram(
    "dsa_object_store_seconds",
    "object store request latency (S3)",
    ["op"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CACHE_READS = Counter(
    "dsa_node_cache_reads_total", "node cache lookups of remote objects", ["result"]
)


class _Installation(Collector):
    """Jobs by kind and state and the task queue's length, read at scrape time."""

    def collect(self) -> Iterator[Any]:
        from core import db
        from core.config import get_settings

        jobs = GaugeMetricFamily(
            "dsa_jobs", "queued and running jobs, by kind and state", labels=["kind", "state"]
        )
        try:
            with db.read() as conn:
                for row in conn.execute(
                    "SELECT kind, state, count(*) AS n FROM job "
                    "WHERE state IN ('queued', 'running') GROUP BY kind, state"
                ):
                    jobs.add_metric([row["kind"], row["state"]], row["n"])
        except Exception:  # a scrape never fails for want of the database
            pass
        yield jobs
        queue = GaugeMetricFamily("dsa_queue_length", "task messages waiting in the broker")
        url = get_settings().redis_url
        if url:
            try:
                import redis

                client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
                try:
                    queue.add_metric([], client.llen("dsa"))
                finally:
                    client.close()
            except Exception:
                pass
        yield queue


def registry() -> CollectorRegistry:
    """This process's metrics, or with ``PROMETHEUS_MULTIPROC_DIR`` those of
    every process of the node that writes there."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return merged
    from prometheus_client import REGISTRY

    return REGISTRY


def collect() -> bytes:
    """The Prometheus text of this node's processes and the installation."""
    out = generate_latest(registry())
    extra = CollectorRegistry()
    extra.register(_Installation())
    return out + generate_latest(extra)

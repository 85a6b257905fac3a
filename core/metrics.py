"""Prometheus metrics an operator alerts on (docs/operations.md, "Metrics").

Counters and histograms live in the process that records them (the API's
requests, the worker's jobs, gc and fsck, every process's object store and
cache). With several processes per node (``dsa up``; uvicorn workers; the
Celery pool) ``PROMETHEUS_MULTIPROC_DIR`` names a directory they all write
to, and ``collect()`` merges them; the API serves them at ``/metrics`` and
a worker at ``DSA_WORKER_METRICS_PORT`` when set. Gauges of the whole
installation (jobs by state, queue length) are read from PostgreSQL and
Redis when scraped (``features.health``), so every API process agrees.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
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


def registry() -> CollectorRegistry:
    """This process's metrics, or with ``PROMETHEUS_MULTIPROC_DIR`` those of
    every process of the node that writes there."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return merged
    from prometheus_client import REGISTRY

    return REGISTRY


def collect(*installation: Collector) -> bytes:
    """The Prometheus text of this node's processes, and of ``installation``
    (collectors read at scrape time: the health feature's jobs and queue)."""
    out = generate_latest(registry())
    extra = CollectorRegistry()
    for collector in installation:
        extra.register(collector)
    return out + generate_latest(extra)

"""The DSA client: ``dsa.Client`` (docs/clients.md).

It talks to a server over HTTP only and imports nothing of the server
(an import-linter contract says so).
"""

from dsa.client import Client, JobFailed
from dsa.errors import DsaClientError, NotConfigured, ProblemError, Unreachable


def scan_parquet(url: str, **kw: object) -> object:
    """A polars LazyFrame of ``dsa://DATASET@REF/TABLE.parquet`` (ranged reads)."""
    from dsa.fs import scan_parquet as scan

    return scan(url, **kw)


def read_parquet(url: str, **kw: object) -> object:
    """A polars DataFrame of ``dsa://DATASET@REF/TABLE.parquet``."""
    from dsa.fs import read_parquet as read

    return read(url, **kw)


__all__ = [
    "Client",
    "DsaClientError",
    "JobFailed",
    "NotConfigured",
    "ProblemError",
    "Unreachable",
    "read_parquet",
    "scan_parquet",
]

"""The DSA client: ``dsa.Client`` (docs/clients.md).

It talks to a server over HTTP only and imports nothing of the server
(an import-linter contract says so).
"""

from dsa.client import Client, JobFailed
from dsa.errors import DsaClientError, NotConfigured, ProblemError, Unreachable

__all__ = ["Client", "DsaClientError", "JobFailed", "NotConfigured", "ProblemError", "Unreachable"]

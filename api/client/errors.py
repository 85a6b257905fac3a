"""What the client raises: a server's problem document, or why no server answered."""

from __future__ import annotations

from typing import Any


class DsaClientError(Exception):
    """Anything the client could not do, with a one-line message for people."""


class ProblemError(DsaClientError):
    """The server answered with an RFC 9457 problem document (``problem``):
    ``status``, ``code``, ``title``, ``detail`` and fields such as ``line``,
    ``column``, ``conflicts``."""

    def __init__(self, problem: dict[str, Any]) -> None:
        self.problem = problem
        self.status: int = int(problem.get("status") or 0)
        self.code: str | None = problem.get("code")
        self.title: str = str(problem.get("title") or "Error")
        self.detail: str | None = problem.get("detail")
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The problem in plain words: detail (or title), and where in a file."""
        text = str(self.detail or self.title)
        where = [
            f"{k} {self.problem[k]}"
            for k in ("file", "sheet", "line", "row", "column")
            if self.problem.get(k) not in (None, "")
        ]
        return text + (f" ({', '.join(where)})" if where else "")


class NotConfigured(DsaClientError):
    """No server or credentials: neither arguments, ``DSA_URL``/``DSA_TOKEN``,
    nor what ``dsa login`` saved."""


class Unreachable(DsaClientError):
    """No answer from the server (connection refused, DNS, timeout)."""

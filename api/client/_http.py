"""One HTTP session to a DSA server: the bearer token, problem documents
raised as ``ProblemError``, and retries with backoff on 429 and 503 that
honour ``Retry-After``."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from dsa.errors import ProblemError, Unreachable

RETRY_STATUSES = (429, 503)
CONNECT_RETRIES = 2
USER_AGENT = "dsa-client/1"


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The response's problem document (or one made from its status)."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("title" in body or "detail" in body):
        body.setdefault("status", response.status_code)
        return body
    reason = response.reason_phrase or "error"
    return {
        "status": response.status_code,
        "title": reason,
        "detail": f"{response.request.method} {response.request.url.path}: "
        f"{response.status_code} {reason}",
    }


def retry_after(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait before the next attempt: ``Retry-After`` when the
    server sent one (at most 60), else exponential backoff with jitter."""
    header = response.headers.get("retry-after")
    if header and header.strip().isdigit():
        return min(60.0, float(header))
    return min(30.0, 0.25 * 2**attempt) * (0.5 + random.random() / 2)


class Session:
    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 60.0,
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"User-Agent": USER_AGENT}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url
        self.retries = retries
        self.http = httpx.Client(
            base_url=url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
        )

    def close(self) -> None:
        self.http.close()

    def _send(self, build: Callable[[], httpx.Request], stream: bool) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = self.http.send(build(), stream=stream)
            except httpx.TransportError as err:
                # a refused connection is retried briefly (a server restarting),
                # not for as long as a 429: a wrong URL should fail fast
                if attempt >= min(self.retries, CONNECT_RETRIES) or not isinstance(
                    err, httpx.ConnectError | httpx.RemoteProtocolError
                ):
                    raise Unreachable(f"cannot reach {self.url}: {err}") from None
                time.sleep(min(5.0, 0.25 * 2**attempt))
                attempt += 1
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                wait = retry_after(response, attempt)
                response.close()
                time.sleep(wait)
                attempt += 1
                continue
            if response.status_code >= 400:
                if stream:
                    response.read()
                response.close()
                raise ProblemError(problem_of(response))
            return response

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """A request whose answer is read whole; a ``files`` argument must
        be a callable returning fresh files (a retry sends them again)."""
        files = kw.pop("files", None)

        def build() -> httpx.Request:
            extra = {"files": files()} if files is not None else {}
            return self.http.build_request(method, path, **kw, **extra)

        return self._send(build, stream=False)

    def json(self, method: str, path: str, **kw: Any) -> Any:
        response = self.request(method, path, **kw)
        return response.json() if response.content else None

    @contextmanager
    def stream(self, method: str, path: str, **kw: Any) -> Iterator[httpx.Response]:
        response = self._send(lambda: self.http.build_request(method, path, **kw), stream=True)
        try:
            yield response
        finally:
            response.close()

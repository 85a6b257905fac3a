"""Posting a delivery: the signed request, the address rule, the backoff.

Each delivery is a JSON ``POST`` with ``X-DSA-Event``, ``X-DSA-Delivery``
(its id: the same on every attempt, so a receiver can drop repeats) and
``X-DSA-Signature: sha256=<hex HMAC-SHA256 of the body with the webhook's
secret>``. The host is resolved and checked as URL imports' are
(``core.addresses``) and the request goes to the checked address; redirects
are not followed (a 3xx is a failed attempt); the answer's body is never
read. An attempt takes at most ``timeout`` to connect and answer, and the
whole post at most ``2 × timeout`` (a receiver that trickles its answer is
cut off); a worker holds a delivery for ``lease_s`` while it posts.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import random
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import certifi
import httpx

from core import addresses

USER_AGENT = "DSA-Webhooks/1"
MAX_DELAY_S = 3600.0


@dataclass(frozen=True)
class Answer:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def row(self) -> dict[str, Any]:
        return {
            "status_code": self.status_code,
            "error": self.error,
            "duration_ms": self.duration_ms,
        }


def signature(secret: str, body: str) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``body`` (as sent, UTF-8) with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()


def headers(secret: str, body: str, *, event: str, delivery: uuid.UUID) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-DSA-Event": event,
        "X-DSA-Delivery": str(delivery),
        "X-DSA-Signature": signature(secret, body),
    }


def lease_s(timeout_s: float) -> float:
    """How long a worker holds a delivery: past the longest post it can make."""
    return 2 * timeout_s + 5


def backoff(attempts: int, base_s: float) -> float:
    """The wait after the ``attempts``-th failed attempt: doubling from
    ``base_s``, at most an hour, ±20 % so receivers are not hit in step."""
    return min(base_s * 2 ** (attempts - 1), MAX_DELAY_S) * random.uniform(0.8, 1.2)


@functools.cache
def _tls() -> ssl.SSLContext:
    """The TLS settings of every post, made once a process (httpx makes them
    for each client: 19 ms, most of a delivery's time)."""
    return ssl.create_default_context(cafile=certifi.where())


def send(
    url: str, body: str, *, headers: dict[str, str], timeout_s: float, allow_private: bool
) -> Answer:
    """One attempt: the receiver's status, or why there was none."""
    start = time.monotonic()

    def answer(status: int | None, error: str | None) -> Answer:
        return Answer(status, error, int((time.monotonic() - start) * 1000))

    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addr = addresses.check_address(parts.hostname or "", port, allow_private=allow_private)
    except (addresses.Unresolvable, addresses.NotAllowed) as exc:
        return answer(None, str(exc))
    except (ValueError, UnicodeError) as exc:  # made before the URL rules were this strict
        return answer(None, f"not a URL a webhook can post to: {exc}")
    to = addresses.pin(url, addr)
    client = httpx.Client(timeout=timeout_s, follow_redirects=False, trust_env=False, verify=_tls())
    # the whole post is bounded: a receiver trickling its answer is cut off
    cutoff = threading.Timer(2 * timeout_s, client.close)
    cutoff.start()
    try:
        with client.stream(
            "POST",
            to.url,
            content=body.encode(),
            headers={**to.headers, **headers},
            extensions=to.extensions,
        ) as resp:
            status = resp.status_code
        if 300 <= status < 400:
            return answer(status, f"HTTP {status}: redirects are not followed")
        return answer(status, None if 200 <= status < 300 else f"HTTP {status}")
    except httpx.TimeoutException:
        return answer(None, f"no answer within {timeout_s:g} s")
    except Exception as exc:  # any failure is a failed attempt, retried; never a lost delivery
        if time.monotonic() - start >= 2 * timeout_s:
            return answer(None, f"no whole answer within {2 * timeout_s:g} s")
        return answer(None, f"{type(exc).__name__}: {str(exc)[:500]}")
    finally:
        cutoff.cancel()
        client.close()

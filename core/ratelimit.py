"""Rate limits, counted in Redis so that every API process shares them.

A well-kept library does the counting (``limits``: sliding-window counters,
one Lua call to Redis a hit, ~0.1 ms here). The rules are settings, written
as ``limits`` reads them (``300/minute``, ``10/15 minutes``), checked when
the settings load:

- ``DSA_RATE_LIMIT_ANONYMOUS``: requests of one client address without a
  working credential; ``DSA_RATE_LIMIT_USER``: requests of one user, all
  their sessions and tokens together. Expensive requests (compare, filtered
  or sorted pages, exports) count ``EXPENSIVE_COST`` each
  (``api/ratelimits.py``).
- ``DSA_RATE_LIMIT_LOGIN_USER`` / ``DSA_RATE_LIMIT_LOGIN_ADDRESS``: failed
  sign-ins per username and per client address (``features.auth``).
- ``DSA_RATE_LIMIT_IMPORTS``: uploads and URL imports per user.
- ``DSA_RATE_LIMIT_USER_LOOKUPS``: grants naming unknown usernames.

A check-then-count rule (failed sign-ins: only a failure counts, and only
once the password was checked) lets concurrent attempts all pass the check
before any is counted; ``one_at_a_time`` serialises them per key (a Redis
``SET NX`` with an expiry), so each sees the ones before it.

Over a limit the answer is 429 ``too_many_requests`` with ``Retry-After``.
When Redis does not answer, requests are let through and a warning logged:
a broken counter must not take the service down with it (the queue needs
Redis anyway, so imports stop too, and /readyz says so).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, cast

import structlog
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import SlidingWindowCounterRateLimiter

from core.config import get_settings
from core.errors import TooManyRequests

log = structlog.get_logger(__name__)
EXPENSIVE_COST = 10
_PREFIX = "dsa-rl"
_warned_at = 0.0


@lru_cache(maxsize=1)
def _limiter() -> SlidingWindowCounterRateLimiter:
    url = get_settings().redis_url
    storage: Storage = (
        cast(Storage, storage_from_string(url, key_prefix=_PREFIX, socket_timeout=0.5))
        if url
        else MemoryStorage()  # no Redis configured (a unit test): this process alone
    )
    return SlidingWindowCounterRateLimiter(storage)


@lru_cache(maxsize=64)
def rule(text: str) -> RateLimitItem:
    """A rule as written in a setting (``300/minute``)."""
    return parse(text)


def _unreachable(err: Exception) -> None:
    global _warned_at
    if time.monotonic() - _warned_at > 60:  # once a minute, not once a request
        _warned_at = time.monotonic()
        log.warning("rate limits not counted: Redis did not answer", error=str(err))


def retry_after(item: RateLimitItem, *key: str) -> int:
    """Whole seconds until ``key`` may try again under ``item``."""
    try:
        reset = _limiter().get_window_stats(item, *key).reset_time
    except Exception:  # noqa: BLE001 - Redis away: a guess is fine
        return item.get_expiry()
    return max(1, math.ceil(reset - time.time()))


def hit(text: str, *key: str, cost: int = 1, what: str = "requests") -> None:
    """Count ``cost`` against rule ``text`` for ``key``; 429 when over it."""
    _enforce("hit", text, key, cost, what)


def check(text: str, *key: str, what: str = "requests") -> None:
    """429 if ``key`` is already over rule ``text``, without counting."""
    _enforce("test", text, key, 1, what)


def _enforce(how: str, text: str, key: tuple[str, ...], cost: int, what: str) -> None:
    item = rule(text)
    try:
        allowed = getattr(_limiter(), how)(item, *key, cost=cost)
    except Exception as err:  # noqa: BLE001 - any storage failure: let it through
        _unreachable(err)
        return
    if not allowed:
        raise TooManyRequests(
            f"too many {what} (at most {item}); try again later",
            retry_after=retry_after(item, *key),
        )


def count(text: str, *key: str) -> None:
    """Count one against rule ``text`` for ``key``, never refusing (a failure seen)."""
    try:
        _limiter().hit(rule(text), *key)
    except Exception as err:  # noqa: BLE001
        _unreachable(err)


_LOCK_PREFIX = "dsa-lock:"
_RELEASE = """if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0"""
_local_locks: set[str] = set()


@lru_cache(maxsize=1)
def _redis() -> Any:
    import redis

    url = get_settings().redis_url
    if not url:
        return None
    return redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)


@contextmanager
def one_at_a_time(*key: str, ttl_s: float = 10.0, what: str = "requests") -> Iterator[None]:
    """Hold ``key`` while the block runs, in every process sharing the Redis;
    429 at once (``Retry-After: 1``) when another holds it. The hold expires
    after ``ttl_s`` (a process that died holding it). Without Redis (a unit
    test), or when it does not answer, the block runs unheld."""
    name = _LOCK_PREFIX + ":".join(key)
    token = secrets.token_hex(8)
    client = _redis()
    held = False
    try:
        if client is None:
            held = name not in _local_locks
            _local_locks.add(name)
        else:
            held = bool(client.set(name, token, nx=True, px=int(ttl_s * 1000)))
    except Exception as err:  # noqa: BLE001 - Redis away: let it through
        _unreachable(err)
        yield
        return
    if not held:
        raise TooManyRequests(f"another {what} is in progress; try again in a moment")
    try:
        yield
    finally:
        try:
            if client is None:
                _local_locks.discard(name)
            else:
                client.eval(_RELEASE, 1, name, token)
        except Exception as err:  # noqa: BLE001 - it expires on its own
            _unreachable(err)


def reset() -> None:
    """Forget every counter (tests; an operator after an incident)."""
    try:
        _limiter().storage.reset()
    except Exception as err:  # noqa: BLE001
        _unreachable(err)

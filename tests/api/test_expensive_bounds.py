"""Expensive requests (compare, merge bases, filtered or sorted pages,
exports) have a bounded number of slots per API process and per user, and
a deadline (issue 15, "Expensive anonymous work"). Before: only anonymous
callers had slots, and nothing had a deadline: a signed-in user could hold
every thread with slow queries for as long as they ran."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anyio
import jwt
import polars as pl
import pytest

from core import deadline
from core.config import get_settings
from core.errors import DeadlineExceeded
from features.data import query
from tests.conftest import Worker, import_csv, make_dataset


def _token(user: uuid.UUID) -> str:
    now = int(time.time())
    claims = {"sub": str(user), "ver": 0, "jti": str(uuid.uuid4()), "iat": now, "exp": now + 60}
    return jwt.encode(claims, get_settings().key("jwt"), algorithm="HS256")


def _in_flight(
    callers: list[str | None],
    path: str = "/compare/a...b",
    query: bytes = b"",
    extra: tuple[tuple[bytes, bytes], ...] = (),
) -> list[int]:
    """Statuses of requests by ``callers`` (a token, or None: anonymous),
    each started while all earlier ones still run (their app waits)."""
    from api.ratelimits import RateLimitMiddleware

    release = anyio.Event()
    statuses: list[int] = []

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    middleware = RateLimitMiddleware(slow_app)

    async def call(token: str | None) -> None:
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        headers += extra
        scope = {
            "type": "http",
            "method": "GET",
            "path": f"/api/v1/datasets/{uuid.uuid4()}{path}",
            "query_string": query,
            "headers": headers,
            "client": ("198.51.100.9", 1234),
        }

        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        await middleware(scope, None, send)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            for token in callers:
                tg.start_soon(call, token)
                await anyio.sleep(0.05)  # admitted or refused by now
            release.set()

    anyio.run(main)
    return statuses


def test_one_user_takes_at_most_their_share_of_the_slots(rules: Any) -> None:
    rules(expensive_concurrency=4, expensive_per_user=2)
    alice, bob = _token(uuid.uuid4()), _token(uuid.uuid4())
    # alice's third is refused at once; bob still gets in
    statuses = _in_flight([alice, alice, alice, bob])
    assert statuses[0] == 429 and sorted(statuses[1:]) == [200, 200, 200]


def test_every_caller_together_takes_at_most_the_process_slots(rules: Any) -> None:
    rules(expensive_concurrency=2, expensive_per_user=2, anonymous_expensive_concurrency=2)
    users = [_token(uuid.uuid4()) for _ in range(3)]
    statuses = _in_flight([users[0], users[1], users[2], None], path="/refs/main/export")
    assert statuses[:2] == [429, 429] and statuses[2:] == [200, 200]


def test_cheap_requests_take_no_slot(rules: Any) -> None:
    rules(expensive_concurrency=1, expensive_per_user=1)
    alice = _token(uuid.uuid4())
    assert _in_flight([alice, alice, alice], path="/refs/main/data") == [200, 200, 200]


def test_ranged_reads_of_a_parquet_export_take_no_slot(rules: Any) -> None:
    """polars reads a Parquet link with many ranged reads at once; a
    ranged read of another format streams the whole file, as a GET does."""
    rules(expensive_concurrency=1, expensive_per_user=1, anonymous_expensive_concurrency=1)
    alice, ranged = _token(uuid.uuid4()), ((b"range", b"bytes=0-99"),)
    path, parquet = "/refs/main/export", b"format=parquet&table=t"
    assert _in_flight([alice] * 3, path, parquet, ranged) == [200, 200, 200]
    assert _in_flight([None] * 3, path, parquet, ranged) == [200, 200, 200]
    assert sorted(_in_flight([alice] * 2, path, b"format=csv", ranged)) == [200, 429]
    assert sorted(_in_flight([alice] * 2, path, parquet)) == [200, 429]


def test_polars_reads_a_signed_link_at_the_default_limits(
    client: Any, admin: dict[str, str], rules: Any, worker: Worker
) -> None:
    """A signed link's requests count as the user who made it, and ranged
    reads of the stored file cost one request each. Before: they counted as
    anonymous, ten each (``DSA_RATE_LIMIT_ANONYMOUS`` 600/minute), in at most
    half the cores' slots: ``polars.scan_parquet`` of a link failed after a
    few reads (429 after 60 ranged reads from one address)."""
    ds = make_dataset(client, admin)
    body = "id,v\n" + "".join(f"{i},{i % 97}\n" for i in range(20_000))
    import_csv(client, admin, ds["id"], body.encode())
    r = client.post(
        f"/api/v1/datasets/{ds['id']}/refs/main/export-links",
        json={"format": "parquet", "expires_in_seconds": 600},
        headers=admin,
    )
    url = r.json()["url"].split("://", 1)[1].split("/", 1)[1]
    rules(
        rate_limit_anonymous="600/minute",
        rate_limit_user="3000/minute",
        expensive_concurrency=2,
        expensive_per_user=1,
        anonymous_expensive_concurrency=1,
    )
    size = int(client.head(f"/{url}").headers["content-length"])
    statuses = [
        client.get(f"/{url}", headers={"range": f"bytes={i}-{min(i + 99, size - 1)}"}).status_code
        for i in range(0, 100 * 100, 100)
    ]
    assert statuses == [206] * 100
    with ThreadPoolExecutor(8) as pool:  # at once, as polars reads
        got = list(
            pool.map(
                lambda i: client.get(f"/{url}", headers={"range": f"bytes={i}-{i + 9}"}),
                range(0, 800, 10),
            )
        )
    assert {g.status_code for g in got} == {206}
    whole = client.get(f"/{url}")
    assert whole.status_code == 200 and pl.read_parquet(whole.content).height == 20_000


def test_a_query_past_the_deadline_is_cancelled_and_frees_its_thread() -> None:
    def slow(x: int) -> int:
        time.sleep(0.05)
        return x

    lazy = pl.LazyFrame({"a": list(range(60))}).select(
        pl.col("a").map_elements(slow, return_dtype=pl.Int64)
    )  # 3 s if it ran to the end
    started = time.monotonic()
    with deadline.within(0.3), pytest.raises(DeadlineExceeded):
        deadline.collect(lazy)
    assert time.monotonic() - started < 2.0
    for t in threading.enumerate():  # polars finishes the cancelled query on its own
        if t.name == "polars-cancelled":
            t.join(30)
    with deadline.within(5):
        assert deadline.collect(pl.LazyFrame({"a": [1, 2]})).height == 2


def test_a_filtered_page_past_the_deadline_is_a_503_problem(
    client: Any, admin: dict[str, str], rules: Any, worker: Worker
) -> None:
    ds = make_dataset(client, admin)
    body = "id,v\n" + "".join(f"{i},{i % 97}\n" for i in range(20_000))
    first = import_csv(client, admin, ds["id"], body.encode())["commit_id"]
    edited = body.replace("\n5,5\n", "\n5,555\n")
    second = import_csv(client, admin, ds["id"], edited.encode())["commit_id"]
    url = f"/api/v1/datasets/{ds['id']}/refs/main/data"
    query.clear_cache()
    rules(expensive_deadline_s=1e-9)
    r = client.get(url, params={"sort": "-v", "limit": 5}, headers=admin)
    assert r.status_code == 503, r.text
    assert (
        r.json()["code"] == "deadline_exceeded" and "DSA_EXPENSIVE_DEADLINE_S" in r.json()["detail"]
    )
    compare = f"/api/v1/datasets/{ds['id']}/compare/{first}...{second}"
    r = client.get(compare, headers=admin)
    assert r.status_code == 503 and r.json()["code"] == "deadline_exceeded", r.text
    assert client.get(url, params={"limit": 5}, headers=admin).status_code == 200  # cheap
    rules(expensive_deadline_s=30)
    r = client.get(url, params={"sort": "-v", "limit": 5}, headers=admin)
    assert r.status_code == 200 and [row[1] for row in r.json()["rows"]] == [555, 96, 96, 96, 96]
    assert client.get(compare, headers=admin).json()["summary"]["modified"] == 1

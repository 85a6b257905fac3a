"""Many writers on one branch at once, over real HTTP with several worker
processes: appends and upserts that lose the ref compare-and-swap are rebased
on the new head, so every one lands, once, in a linear history.

(The deterministic cases, a race at a fixed point, a replace or a stale
``expected_commit_id`` answered with 409, are in
tests/features/imports/test_concurrent_writers.py.)"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import _spawn, _stop, import_csv, make_dataset, upload, wait_job

WRITERS = 16
ROWS_EACH = 40


@pytest.fixture(scope="module")
def more_workers(stack: dict[str, str], api_url: str) -> Iterator[subprocess.Popen[bytes]]:
    """A second worker process with 4 pool processes next to the session's
    single one: imports really run side by side."""
    log = Path(stack["DSA_HOME"]) / "worker-more.log"
    proc = _spawn(["worker", "--concurrency", "4"], stack, log)
    deadline = time.monotonic() + 60
    while b" ready." not in (log.read_bytes() if log.exists() else b""):
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(f"worker did not start:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)
    yield proc
    _stop(proc)


def _all_rows(http: httpx.Client, auth: dict[str, str], ds: str) -> list[list[Any]]:
    rows: list[list[Any]] = []
    while True:
        page = http.get(
            f"/api/v1/datasets/{ds}/refs/main/data",
            params={"table": "t", "offset": len(rows), "limit": 1000},
            headers=auth,
        ).json()
        rows.extend(page["rows"])
        if len(rows) >= page["total_rows"]:
            return rows


def _fire(api_url: str, auth: dict[str, str], ds: str, files: list[bytes], mode: str) -> list[Any]:
    """Upload every file at once, one client per thread; wait for all the jobs."""

    def one(i: int) -> dict[str, Any]:
        with httpx.Client(base_url=api_url, timeout=120) as c:
            r = upload(c, auth, ds, files[i], filename=f"part{i}.csv", table="t", mode=mode)
            assert r.status_code == 202, r.text
            return wait_job(c, auth, r.json()["job_id"], timeout=300)

    with ThreadPoolExecutor(len(files)) as pool:
        return list(pool.map(one, range(len(files))))


def _first_parent_chain(
    http: httpx.Client, auth: dict[str, str], ds: str, n: int
) -> list[dict[str, Any]]:
    r = http.get(f"/api/v1/datasets/{ds}/commits", params={"per_page": n}, headers=auth)
    items = list(r.json()["items"])
    assert len(items) == n
    for child, parent in zip(items, items[1:], strict=False):
        assert child["parents"] == [parent["id"]], "history is not linear"
    return items


def test_sixteen_concurrent_appends_all_land_once_in_a_line(
    http: httpx.Client,
    auth: dict[str, str],
    api_url: str,
    more_workers: subprocess.Popen[bytes],
) -> None:
    ds = make_dataset(http, auth)["id"]
    base = import_csv(http, auth, ds, b"id,writer,v\n0,-1,0.5\n", filename="t.csv")
    assert base["state"] == "succeeded", base
    files = [
        (
            "id,writer,v\n"
            + "".join(f"{w * 1000 + i},{w},{i * 0.25}\n" for i in range(1, ROWS_EACH + 1))
        ).encode()
        for w in range(WRITERS)
    ]
    jobs = _fire(api_url, auth, ds, files, "append")

    assert [j["state"] for j in jobs] == ["succeeded"] * WRITERS, [
        j.get("error") for j in jobs if j["state"] != "succeeded"
    ]
    assert all(j["result"]["rows"] == ROWS_EACH for j in jobs)
    rebases = sum(j["result"].get("rebases", 0) for j in jobs)
    print(f"{rebases} rebases among {WRITERS} concurrent appends")

    # every row exactly once, each writer's rows together and in file order
    rows = _all_rows(http, auth, ds)
    assert len(rows) == 1 + WRITERS * ROWS_EACH
    counts = Counter(r[0] for r in rows)
    assert set(counts.values()) == {1}
    assert set(counts) == {0} | {w * 1000 + i for w in range(WRITERS) for i in range(1, 41)}
    assert rows[0] == [0, -1, 0.5]
    for start in range(1, len(rows), ROWS_EACH):
        block = rows[start : start + ROWS_EACH]
        w = block[0][1]
        assert block == [[w * 1000 + i, w, i * 0.25] for i in range(1, ROWS_EACH + 1)]

    # a line of 16 new commits on the base, one per job, each on the one before
    chain = _first_parent_chain(http, auth, ds, WRITERS + 2)
    assert chain[WRITERS]["id"] == base["commit_id"]
    assert {c["id"] for c in chain[:WRITERS]} == {j["commit_id"] for j in jobs}
    assert [c["stats"]["rows"] for c in reversed(chain[:WRITERS])] == [
        1 + ROWS_EACH * k for k in range(1, WRITERS + 1)
    ]
    head = http.get(f"/api/v1/datasets/{ds}/refs", headers=auth).json()["items"]
    assert next(r["commit_id"] for r in head if r["name"] == "main") == chain[0]["id"]
    # the job's table_rows is the table's size in its own commit
    by_commit = {c["id"]: c["stats"]["rows"] for c in chain}
    assert all(j["result"]["table_rows"] == by_commit[j["commit_id"]] for j in jobs)


def test_concurrent_upserts_all_land_with_their_values(
    http: httpx.Client,
    auth: dict[str, str],
    api_url: str,
    more_workers: subprocess.Popen[bytes],
) -> None:
    writers = 8
    ds = make_dataset(http, auth, primary_key=["id"])["id"]
    base_rows = "".join(f"{k},base\n" for k in range(writers * 10))
    base = import_csv(http, auth, ds, ("id,v\n" + base_rows).encode(), filename="t.csv")
    assert base["state"] == "succeeded", base
    # writer w rewrites keys w*10 .. w*10+4 and adds key 1000+w
    files = [
        (
            "id,v\n" + "".join(f"{w * 10 + i},w{w}\n" for i in range(5)) + f"{1000 + w},new{w}\n"
        ).encode()
        for w in range(writers)
    ]
    jobs = _fire(api_url, auth, ds, files, "upsert")
    assert [j["state"] for j in jobs] == ["succeeded"] * writers, [j.get("error") for j in jobs]

    rows = _all_rows(http, auth, ds)
    assert len(rows) == writers * 10 + writers
    # the base keys keep their places; new keys follow, in the order their jobs landed
    assert [r[0] for r in rows[: writers * 10]] == list(range(writers * 10))
    expected = {k: ("base" if k % 10 >= 5 else f"w{k // 10}") for k in range(writers * 10)}
    expected.update({1000 + w: f"new{w}" for w in range(writers)})
    assert dict((r[0], r[1]) for r in rows) == expected
    _first_parent_chain(http, auth, ds, writers + 2)

"""Scheduled URL imports end to end (issue 18): a file server on this
machine whose file changes (ETag, Last-Modified, 304), real beat and worker
processes and a cron with seconds. Unchanged content makes no commit; a
change makes one; failures in a row pause the schedule and fire
``schedule.paused``; a service that was down runs what it missed once; two
beats never start one run twice."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.conftest import Worker, _spawn, _stop, make_dataset, make_user, wait_job
from tests.e2e.test_webhooks import Receiver, _checked, _hook


class Source:
    """Serves ``/data.csv`` (ETag and Last-Modified, 304 to a request whose
    validators match), ``/same.csv`` (the same bytes, no validators),
    ``/moved.csv`` (a redirect to ``/same.csv``),
    ``/gone.csv`` (404) and ``/slow.csv`` (answers after ``slow_s``); notes
    the conditional headers of every request."""

    def __init__(self) -> None:
        self.body = b"id,v\n1,a\n"
        self.requests: list[dict[str, Any]] = []
        self.slow_s = 3.0
        source = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?")[0]
                source.requests.append(
                    {
                        "path": path,
                        "if_none_match": self.headers.get("If-None-Match"),
                        "if_modified_since": self.headers.get("If-Modified-Since"),
                    }
                )
                body = source.body
                etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
                if path == "/data.csv":
                    if self.headers.get("If-None-Match") == etag:
                        self.send_response(304)
                        self.send_header("ETag", etag)
                        self.end_headers()
                        return
                    return self._send(body, {"ETag": etag, "Last-Modified": source.modified()})
                if path == "/same.csv":
                    return self._send(b"id,v\n1,a\n", {})
                if path == "/moved.csv":  # the publisher moved the file
                    self.send_response(302)
                    self.send_header("Location", "/same.csv")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if path == "/slow.csv":
                    time.sleep(source.slow_s)
                    return self._send(b"id,v\n1,a\n", {})
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _send(self, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def modified(self) -> str:
        return "Wed, 02 Dec 2026 10:00:00 GMT"


@pytest.fixture(scope="module")
def source() -> Iterator[Source]:
    s = Source()
    threading.Thread(target=s.server.serve_forever, daemon=True).start()
    yield s
    s.server.shutdown()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    threading.Thread(target=r.server.serve_forever, daemon=True).start()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def beat(stack: dict[str, str], worker: Worker) -> Iterator[None]:
    """Celery beat: ticks the schedules every 0.5 s (``DSA_SCHEDULE_TICK_S``)."""
    proc = _spawn(["beat"], stack, Path(stack["DSA_HOME"]) / "beat-schedules.log")
    yield
    _stop(proc)


def _schedule(http: httpx.Client, auth: dict[str, str], ds: str, **body: Any) -> dict[str, Any]:
    r = http.post(f"/api/v1/datasets/{ds}/schedules", json=body, headers=auth)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _get(http: httpx.Client, auth: dict[str, str], ds: str, sid: str) -> dict[str, Any]:
    r = http.get(f"/api/v1/datasets/{ds}/schedules/{sid}", headers=auth)
    assert r.status_code == 200, r.text
    return dict(r.json())


def _runs_until(
    http: httpx.Client, auth: dict[str, str], ds: str, sid: str, check: Any, timeout: float = 60
) -> dict[str, Any]:
    """The schedule once ``check(its ended runs, oldest first)`` holds (runs
    skipped because the last had not ended left out)."""
    deadline = time.monotonic() + timeout
    while True:
        got = _get(http, auth, ds, sid)
        ended = [r for r in reversed(got["runs"]) if r["outcome"] not in (None, "skipped")]
        if check(ended):
            return got
        assert time.monotonic() < deadline, f"runs: {[r['outcome'] for r in ended]}"
        time.sleep(0.2)


def _commits(http: httpx.Client, auth: dict[str, str], ds: str) -> list[dict[str, Any]]:
    return list(http.get(f"/api/v1/datasets/{ds}/commits", headers=auth).json()["items"])


def test_schedules_are_checked_managed_and_shown_without_secrets(
    http: httpx.Client, auth: dict[str, str], source: Source
) -> None:
    ds = make_dataset(http, auth)["id"]
    host = source.url.removeprefix("http://")
    made = _schedule(
        http,
        auth,
        ds,
        url=f"http://alice:s3cret@{host}/data.csv?token=abc",
        cron="0 6 * * 1",
        message="Nightly {date} from {url}",
    )
    assert made["urls"] == [f"http://{host}/data.csv?<redacted>"]
    assert "s3cret" not in str(made) and made["paused"] is False and made["failures"] == 0
    assert made["branch"] == "main" and made["cron"] == "0 6 * * 1" and made["runs"] == []
    assert datetime.fromisoformat(made["next_run_at"]).weekday() == 0
    for bad in ({"cron": "every day"}, {"cron": "61 * * * *"}, {"mode": "sideways"}):
        body = {"url": f"{source.url}/data.csv", "cron": "0 6 * * *", **bad}
        r = http.post(f"/api/v1/datasets/{ds}/schedules", json=body, headers=auth)
        assert r.status_code == 422, (bad, r.text)
    r = http.post(
        f"/api/v1/datasets/{ds}/schedules",
        json={"url": f"{source.url}/data.csv", "cron": "0 6 * * *", "branch": "nope"},
        headers=auth,
    )
    assert r.status_code == 404, r.text
    listed = http.get(f"/api/v1/datasets/{ds}/schedules", headers=auth).json()["items"]
    assert [s["id"] for s in listed] == [made["id"]]
    paused = http.patch(
        f"/api/v1/datasets/{ds}/schedules/{made['id']}", json={"paused": True}, headers=auth
    ).json()
    assert paused["paused"] is True and paused["paused_reason"] == "paused by a user"
    moved = http.patch(
        f"/api/v1/datasets/{ds}/schedules/{made['id']}",
        json={"paused": False, "cron": "30 7 * * *"},
        headers=auth,
    ).json()
    assert moved["paused"] is False and moved["cron"] == "30 7 * * *"
    assert datetime.fromisoformat(moved["next_run_at"]).hour == 7
    reader = make_user(http, auth)
    name = reader.pop("X-Test-Username")
    http.put(f"/api/v1/datasets/{ds}/permissions/{name}", json={"role": "read"}, headers=auth)
    assert http.get(f"/api/v1/datasets/{ds}/schedules", headers=reader).status_code == 403
    gone = http.delete(f"/api/v1/datasets/{ds}/schedules/{made['id']}", headers=auth)
    assert gone.status_code == 204
    again = http.get(f"/api/v1/datasets/{ds}/schedules/{made['id']}", headers=auth)
    assert again.status_code == 404 and again.json()["code"] == "schedule_not_found"


def test_the_minimum_interval_refuses_a_cron_that_runs_too_often(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.config import get_settings
    from features.schedules import service
    from features.schedules.errors import InvalidCron

    monkeypatch.setenv("DSA_SCHEDULE_MIN_INTERVAL_S", "60")
    get_settings.cache_clear()
    try:
        assert service.check_cron("*  * * * *") == "* * * * *"
        with pytest.raises(InvalidCron, match="runs every 10 s"):
            service.check_cron("* * * * * */10")
    finally:
        get_settings.cache_clear()


def test_a_schedule_commits_only_real_changes(
    http: httpx.Client, auth: dict[str, str], source: Source, beat: None
) -> None:
    ds = make_dataset(http, auth)["id"]
    source.body = b"id,v\n1,a\n"
    sched = _schedule(
        http,
        auth,
        ds,
        url=f"{source.url}/data.csv",
        cron="* * * * * */2",
        table="feed",
        message="Feed {date}",
    )
    sid = sched["id"]
    got = _runs_until(
        http, auth, ds, sid, lambda r: [x["outcome"] for x in r][:2] == ["committed", "unchanged"]
    )
    first, second = [r for r in reversed(got["runs"]) if r["outcome"] not in (None, "skipped")][:2]
    assert first["trigger"] == "cron" and first["commit_id"] and first["bytes"] == 9
    assert second["commit_id"] is None
    asked = [q for q in source.requests if q["path"] == "/data.csv"]
    assert asked[0]["if_none_match"] is None and asked[1]["if_none_match"]
    assert asked[1]["if_modified_since"] == source.modified()
    commit = http.get(f"/api/v1/datasets/{ds}/commits/{first['commit_id']}", headers=auth).json()
    assert commit["provenance"]["source"]["schedule_id"] == sid
    assert commit["message"].startswith("Feed 20")
    source.body = b"id,v\n1,a\n2,b\n"
    _runs_until(http, auth, ds, sid, lambda r: sum(x["outcome"] == "committed" for x in r) >= 2)
    head = http.get(f"/api/v1/datasets/{ds}/refs/main/data?table=feed", headers=auth).json()
    assert head["rows"] == [[1, "a"], [2, "b"]]
    http.patch(f"/api/v1/datasets/{ds}/schedules/{sid}", json={"paused": True}, headers=auth)
    # every commit of the dataset is a change of the source
    assert len(_commits(http, auth, ds)) == 3  # the dataset's first, then two versions


def test_identical_content_without_validators_makes_no_commit(
    http: httpx.Client, auth: dict[str, str], source: Source, beat: None
) -> None:
    """The file is served through a redirect (followed, as URL imports
    follow them, each hop checked) and without validators: the runs after
    the first read it and find the branch's rows."""
    ds = make_dataset(http, auth)["id"]
    sched = _schedule(http, auth, ds, url=f"{source.url}/moved.csv", cron="* * * * * */2")
    _runs_until(
        http,
        auth,
        ds,
        sched["id"],
        lambda r: [x["outcome"] for x in r][:3] == ["committed", "unchanged", "unchanged"],
    )
    http.patch(
        f"/api/v1/datasets/{ds}/schedules/{sched['id']}", json={"paused": True}, headers=auth
    )
    assert len(_commits(http, auth, ds)) == 2


def test_failures_in_a_row_pause_the_schedule_and_fire_the_webhook(
    http: httpx.Client, auth: dict[str, str], source: Source, receiver: Receiver, beat: None
) -> None:
    ds = make_dataset(http, auth)["id"]
    path = f"/ok/paused-{ds}"
    _hook(http, auth, ds, f"{receiver.url}{path}", ["schedule.paused"])
    sched = _schedule(http, auth, ds, url=f"{source.url}/gone.csv", cron="* * * * * *")
    got = _runs_until(http, auth, ds, sched["id"], lambda r: len(r) >= 5)
    deadline = time.monotonic() + 30
    while not got["paused"]:
        assert time.monotonic() < deadline, got
        time.sleep(0.2)
        got = _get(http, auth, ds, sched["id"])
    failed = [r for r in got["runs"] if r["outcome"] == "failed"]
    assert all(r["outcome"] in ("failed", "skipped") for r in got["runs"])
    assert len(failed) == 5 and got["failures"] == 5
    assert failed[0]["problem"]["code"] == "url_unreachable"
    assert "5 runs failed in a row" in got["paused_reason"]
    (post,) = receiver.wait(path, 1)
    body = _checked(post)
    assert body["event"] == "schedule.paused" and body["schedule_id"] == sched["id"]
    assert body["failures"] == 5 and body["ref"] == "main"
    time.sleep(1.5)  # paused: no more runs
    runs_after = _get(http, auth, ds, sched["id"])["runs"]
    assert len([r for r in runs_after if r["outcome"] == "failed"]) == 5
    resumed = http.patch(
        f"/api/v1/datasets/{ds}/schedules/{sched['id']}", json={"paused": False}, headers=auth
    ).json()
    assert resumed["failures"] == 0 and resumed["paused_reason"] is None
    http.delete(f"/api/v1/datasets/{ds}/schedules/{sched['id']}", headers=auth)


def test_run_now_and_runs_never_overlap(
    http: httpx.Client, auth: dict[str, str], source: Source
) -> None:
    ds = make_dataset(http, auth)["id"]
    sched = _schedule(http, auth, ds, url=f"{source.url}/slow.csv", cron="0 6 1 1 *")
    r = http.post(f"/api/v1/datasets/{ds}/schedules/{sched['id']}/runs", headers=auth)
    assert r.status_code == 202, r.text
    again = http.post(f"/api/v1/datasets/{ds}/schedules/{sched['id']}/runs", headers=auth)
    assert again.status_code == 409 and again.json()["code"] == "run_in_progress"
    job = wait_job(http, auth, r.json()["job_id"])
    assert job["state"] == "succeeded", job


def test_a_service_that_was_down_runs_what_it_missed_once(
    http: httpx.Client, auth: dict[str, str], source: Source, stack: dict[str, str], beat: None
) -> None:
    """Due a day ago under an hourly cron (24 runs missed): beat starts one
    catch-up run, and the next is the next hour; three tickers racing (beat
    and two here) start it once."""
    from features.schedules import runs

    ds = make_dataset(http, auth)["id"]
    sched = _schedule(http, auth, ds, url=f"{source.url}/same.csv", cron="0 * * * *")
    with psycopg.connect(stack["DSA_DATABASE_URL"], autocommit=True) as c:
        c.execute(
            "UPDATE schedule SET next_run_at = %s WHERE id = %s",
            (datetime.now(UTC) - timedelta(days=1), sched["id"]),
        )
    racers = [threading.Thread(target=runs.tick) for _ in range(2)]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    got = _runs_until(http, auth, ds, sched["id"], lambda r: len(r) >= 1)
    time.sleep(1.5)  # beat ticks three more times
    got = _get(http, auth, ds, sched["id"])
    assert len(got["runs"]) == 1 and got["runs"][0]["trigger"] == "catch-up"
    nxt = datetime.fromisoformat(got["next_run_at"])
    assert datetime.now(UTC) < nxt <= datetime.now(UTC) + timedelta(hours=1)
    assert nxt.minute == 0 and nxt.second == 0
    http.delete(f"/api/v1/datasets/{ds}/schedules/{sched['id']}", headers=auth)


def test_a_branch_moved_elsewhere_is_compared_with_the_whole_file(
    http: httpx.Client, auth: dict[str, str], source: Source, beat: None
) -> None:
    """The validators stand for the commit they matched: after a reset of the
    branch, the next run asks without them, reads the file and commits it
    again, so the mirror catches up with its source."""
    ds = make_dataset(http, auth)["id"]
    source.body = b"id,v\n1,a\n"
    first = _commits(http, auth, ds)[-1]["id"]
    sched = _schedule(http, auth, ds, url=f"{source.url}/data.csv", cron="* * * * * */2")
    sid = sched["id"]
    _runs_until(
        http, auth, ds, sid, lambda r: [x["outcome"] for x in r][:2] == ["committed", "unchanged"]
    )
    http.patch(f"/api/v1/datasets/{ds}/schedules/{sid}", json={"paused": True}, headers=auth)
    head = http.get(f"/api/v1/datasets/{ds}/branches/main", headers=auth).json()["commit_id"]
    r = http.patch(
        f"/api/v1/datasets/{ds}/branches/main",
        json={"commit_id": first, "expected_commit_id": head},
        headers=auth,
    )
    assert r.status_code == 200, r.text
    seen = len(source.requests)
    http.patch(f"/api/v1/datasets/{ds}/schedules/{sid}", json={"paused": False}, headers=auth)
    got = _runs_until(
        http, auth, ds, sid, lambda r: sum(x["outcome"] == "committed" for x in r) >= 2
    )
    asked = [q for q in source.requests[seen:] if q["path"] == "/data.csv"]
    assert asked[0]["if_none_match"] is None and asked[0]["if_modified_since"] is None
    again = next(x for x in got["runs"] if x["outcome"] == "committed")
    assert again["commit_id"] != head  # a new commit on the reset branch, same rows as before
    rows = http.get(f"/api/v1/datasets/{ds}/refs/main/data?table=data", headers=auth).json()
    assert rows["rows"] == [[1, "a"]]
    http.delete(f"/api/v1/datasets/{ds}/schedules/{sid}", headers=auth)


def test_validators_that_cannot_be_sent_back_are_not_kept() -> None:
    from features.imports.fetch import _validator

    assert _validator('"abc-123"') == '"abc-123"'
    assert _validator('"café"') is None and _validator("a\x01b") is None
    assert _validator("x" * 600) is None and _validator(None) is None

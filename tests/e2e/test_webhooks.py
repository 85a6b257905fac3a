"""Webhooks end to end (issue 18): a receiver on this machine, the API and
worker processes, and beat sending the retries. Every delivery is signed;
a change that does not happen sends nothing; a receiver answering 500, or
a worker killed mid-post, gets the same delivery again (same id) until it
answers 2xx; redirects are not followed."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import Worker, _spawn, _stop, import_csv, make_dataset, make_user

SECRET = "a-webhook-secret-of-some-length"


class Receiver:
    """An HTTP server recording every post; per path, how to answer:
    ``ok``; ``fail-first`` (500 to a delivery's first post); ``hang-first``
    (no answer to a delivery's first post for ``hang_s``); ``redirect``."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.hang_s = 30.0
        self.hanging = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                post = {"path": self.path, "headers": dict(self.headers), "body": body}
                delivery = self.headers.get("X-DSA-Delivery")
                with receiver.lock:
                    seen = sum(1 for p in receiver.posts if p["delivery"] == delivery)
                    receiver.posts.append({**post, "delivery": delivery})
                mode = self.path.strip("/").split("/")[0]
                if mode == "fail-first" and seen == 0:
                    return self._answer(500)
                if mode == "hang-first" and seen == 0:
                    receiver.hanging.set()
                    time.sleep(receiver.hang_s)
                    return self._answer(200)
                if mode == "redirect":
                    self.send_response(302)
                    self.send_header("Location", "/ok/elsewhere")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                return self._answer(200)

            def _answer(self, status: int) -> None:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def of(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [p for p in self.posts if p["path"] == path]

    def wait(self, path: str, n: int, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.of(path)) < n:
            assert time.monotonic() < deadline, f"{path}: {len(self.of(path))} of {n} posts"
            time.sleep(0.05)
        return self.of(path)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    thread = threading.Thread(target=r.server.serve_forever, daemon=True)
    thread.start()
    yield r
    r.server.shutdown()


@pytest.fixture(scope="module")
def beat(stack: dict[str, str], worker: Worker) -> Iterator[None]:
    """Celery beat, as `dsa up` runs it: it sends the due deliveries every
    ``DSA_WEBHOOK_SWEEP_S`` (0.5 s in the tests)."""
    log = Path(stack["DSA_HOME"]) / "beat-webhooks.log"
    proc = _spawn(["beat"], stack, log)
    yield
    _stop(proc)


def _hook(
    http: httpx.Client, auth: dict[str, str], ds: str, url: str, events: list[str]
) -> dict[str, Any]:
    r = http.post(
        f"/api/v1/datasets/{ds}/webhooks",
        json={"url": url, "events": events, "secret": SECRET},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


def _checked(post: dict[str, Any]) -> dict[str, Any]:
    """The post's body, once its signature and headers are what they must be."""
    want = "sha256=" + hmac.new(SECRET.encode(), post["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(post["headers"]["X-DSA-Signature"], want)
    assert post["headers"]["Content-Type"] == "application/json"
    body = dict(json.loads(post["body"]))
    assert body["event"] == post["headers"]["X-DSA-Event"]
    assert body["delivery_id"] == post["headers"]["X-DSA-Delivery"]
    return body


def _log(http: httpx.Client, auth: dict[str, str], ds: str, hook: str) -> list[dict[str, Any]]:
    r = http.get(f"/api/v1/datasets/{ds}/webhooks/{hook}/deliveries", headers=auth)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def _until(check: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return got


def test_webhooks_are_managed_by_the_datasets_admins_and_the_secret_shown_once(
    http: httpx.Client, auth: dict[str, str], receiver: Receiver
) -> None:
    ds = make_dataset(http, auth)["id"]
    r = http.post(
        f"/api/v1/datasets/{ds}/webhooks",
        json={"url": f"{receiver.url}/ok/a", "events": ["ref.moved", "commit", "commit"]},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert len(made["secret"]) >= 32 and made["events"] == ["commit", "ref.moved"]
    listed = http.get(f"/api/v1/datasets/{ds}/webhooks", headers=auth).json()["items"]
    assert [h["id"] for h in listed] == [made["id"]] and "secret" not in listed[0]
    one = http.get(f"/api/v1/datasets/{ds}/webhooks/{made['id']}", headers=auth).json()
    assert "secret" not in one and one["url"] == f"{receiver.url}/ok/a"
    bad = [
        {"url": "ftp://example.com/x", "events": ["commit"]},
        {"url": f"{receiver.url}/ok", "events": ["deleted"]},
        {"url": f"{receiver.url}/ok", "events": []},
        {"url": f"{receiver.url}/ok", "events": ["commit"], "secret": "short"},
        {"url": "http://no-such-host.invalid/x", "events": ["commit"]},
        # URLs no request can be made of: refused when made, never a 500
        {"url": "https://example.com/\x01", "events": ["commit"]},
        {"url": "http://example.com:99999/x", "events": ["commit"]},
        {"url": "http://a..b/x", "events": ["commit"]},
        {"url": "http://" + "x" * 70 + ".com/", "events": ["commit"]},
    ]
    for body in bad:
        r = http.post(f"/api/v1/datasets/{ds}/webhooks", json=body, headers=auth)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    writer = make_user(http, auth)
    r = http.put(
        f"/api/v1/datasets/{ds}/permissions/{writer.pop('X-Test-Username')}",
        json={"role": "write"},
        headers=auth,
    )
    assert r.status_code in (200, 201, 204), r.text
    for method, path in (
        ("GET", f"/api/v1/datasets/{ds}/webhooks"),
        ("POST", f"/api/v1/datasets/{ds}/webhooks/{made['id']}/test"),
        ("DELETE", f"/api/v1/datasets/{ds}/webhooks/{made['id']}"),
    ):
        assert http.request(method, path, headers=writer).status_code == 403
    audited = http.get(
        "/api/v1/audit", params={"dataset": ds, "action": "webhook.create"}, headers=auth
    ).json()["items"]
    assert audited and audited[0]["details"]["url"] == f"{receiver.url}/ok/a"
    tokened = http.post(
        f"/api/v1/datasets/{ds}/webhooks",
        json={"url": f"{receiver.url}/ok/b?token=sekrit", "events": ["commit"]},
        headers=auth,
    )
    assert tokened.status_code == 201
    audit_text = http.get("/api/v1/audit", params={"dataset": ds}, headers=auth).text
    assert "sekrit" not in audit_text and "?<redacted>" in audit_text
    assert (
        http.delete(f"/api/v1/datasets/{ds}/webhooks/{made['id']}", headers=auth).status_code == 204
    )
    gone = http.delete(f"/api/v1/datasets/{ds}/webhooks/{made['id']}", headers=auth)
    assert gone.status_code == 404 and gone.json()["code"] == "webhook_not_found"


def test_a_commit_is_posted_signed_with_the_ref_moved(
    http: httpx.Client, auth: dict[str, str], receiver: Receiver
) -> None:
    ds = make_dataset(http, auth)
    hook = _hook(http, auth, ds["id"], f"{receiver.url}/ok/{ds['id']}", ["commit", "ref.moved"])
    job = import_csv(http, auth, ds["id"], b"id,name\n1,ann\n", filename="t.csv")
    assert job["state"] == "succeeded", job
    posts = receiver.wait(f"/ok/{ds['id']}", 2)
    bodies = {b["event"]: b for b in map(_checked, posts)}
    assert set(bodies) == {"commit", "ref.moved"}
    commit = bodies["commit"]
    assert commit["dataset"] == {"id": ds["id"], "name": ds["name"]}
    assert commit["ref"] == "main" and commit["commit_id"] == job["commit_id"]
    assert commit["action"] == "import" and commit["by"] == "admin"
    assert bodies["ref.moved"]["commit_id"] == job["commit_id"]
    assert bodies["ref.moved"]["previous_commit_id"] == commit["previous_commit_id"]
    log = _until(
        lambda: (
            [d for d in _log(http, auth, ds["id"], hook["id"]) if d["state"] == "delivered"]
            if len(_log(http, auth, ds["id"], hook["id"])) == 2
            and all(d["state"] == "delivered" for d in _log(http, auth, ds["id"], hook["id"]))
            else None
        )
    )
    assert all(len(d["attempts"]) == 1 and d["attempts"][0]["status_code"] == 200 for d in log)


def test_a_change_that_does_not_happen_sends_nothing(
    http: httpx.Client, auth: dict[str, str], receiver: Receiver
) -> None:
    """A branch move refused (it moved meanwhile: 409) rolls back, with its
    event; a failed import sends ``job.failed``, not ``commit``."""
    ds = make_dataset(http, auth)["id"]
    first = import_csv(http, auth, ds, b"id\n1\n", filename="t.csv")
    path = f"/ok/nothing-{ds}"
    _hook(http, auth, ds, f"{receiver.url}{path}", ["commit", "ref.moved", "job.failed"])
    r = http.patch(
        f"/api/v1/datasets/{ds}/branches/main",
        json={"commit_id": first["commit_id"], "expected_commit_id": "0" * 64},
        headers=auth,
    )
    assert r.status_code in (409, 422), r.text
    failed = import_csv(http, auth, ds, b"\xff\xfe\x00garbage", filename="t.parquet")
    assert failed["state"] == "failed"
    (post,) = receiver.wait(path, 1)
    body = _checked(post)
    assert body["event"] == "job.failed" and body["job_id"] == failed["id"]
    assert body["problem"]["code"] == failed["error"]["code"] and body["ref"] == "main"
    time.sleep(1)
    assert len(receiver.of(path)) == 1


def test_a_receiver_answering_500_gets_the_same_delivery_again(
    http: httpx.Client, auth: dict[str, str], receiver: Receiver, beat: None
) -> None:
    ds = make_dataset(http, auth)["id"]
    path = f"/fail-first/{ds}"
    hook = _hook(http, auth, ds, f"{receiver.url}{path}", ["commit"])
    import_csv(http, auth, ds, b"id\n1\n", filename="t.csv")
    first, again = receiver.wait(path, 2)
    assert first["delivery"] == again["delivery"] and first["body"] == again["body"]
    (delivery,) = _until(
        lambda: [d for d in _log(http, auth, ds, hook["id"]) if d["state"] == "delivered"]
    )
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
    assert delivery["attempts"][0]["error"] == "HTTP 500"


def test_a_worker_killed_mid_post_leaves_the_delivery_to_the_next(
    http: httpx.Client, auth: dict[str, str], receiver: Receiver, worker: Worker, beat: None
) -> None:
    """The worker dies while the receiver holds its post; once the lease
    ends, beat sends the delivery again and a worker posts it (same id):
    the receiver sees it twice and keeps it once."""
    ds = make_dataset(http, auth)["id"]
    path = f"/hang-first/{ds}"
    hook = _hook(http, auth, ds, f"{receiver.url}{path}", ["commit"])
    receiver.hanging.clear()
    import_csv(http, auth, ds, b"id\n1\n", filename="t.csv")
    assert receiver.hanging.wait(30)
    assert worker.proc is not None
    tree = [worker.proc, *psutil.Process(worker.proc.pid).children(recursive=True)]
    for p in tree:
        os.kill(p.pid, signal.SIGKILL)
    worker.proc.wait(10)
    worker.start()
    posts = receiver.wait(path, 2, timeout=60)
    assert len({p["delivery"] for p in posts}) == 1
    (delivery,) = _until(
        lambda: [d for d in _log(http, auth, ds, hook["id"]) if d["state"] == "delivered"], 60
    )
    # the killed attempt left no answer; the next one's is recorded
    assert delivery["attempts"][-1]["status_code"] == 200


def test_redirects_are_not_followed_and_a_test_event_can_be_sent(
    http: httpx.Client, auth: dict[str, str], receiver: Receiver
) -> None:
    ds = make_dataset(http, auth)["id"]
    hook = _hook(http, auth, ds, f"{receiver.url}/redirect/{ds}", ["commit"])
    r = http.post(f"/api/v1/datasets/{ds}/webhooks/{hook['id']}/test", headers=auth)
    assert r.status_code == 202, r.text
    (post,) = receiver.wait(f"/redirect/{ds}", 1)
    body = _checked(post)
    assert body["event"] == "ping" and body["webhook_id"] == hook["id"]
    assert body["delivery_id"] == r.json()["delivery_id"]
    (delivery,) = _until(lambda: [d for d in _log(http, auth, ds, hook["id"]) if d["attempts"]])
    assert delivery["attempts"][0]["status_code"] == 302
    assert "not followed" in delivery["attempts"][0]["error"]
    assert delivery["state"] == "pending" and not receiver.of("/ok/elsewhere")


def test_the_address_rule_holds_when_private_addresses_are_not_allowed(
    monkeypatch: pytest.MonkeyPatch, receiver: Receiver
) -> None:
    """The tests allow private addresses (the receiver is on 127.0.0.1);
    with the default, a webhook to this machine or the cloud's metadata
    address is refused when made and when posted."""
    from core.config import get_settings
    from features.webhooks import post, service
    from features.webhooks.errors import WebhookAddressNotAllowed

    monkeypatch.setenv("DSA_WEBHOOK_ALLOW_PRIVATE", "false")
    get_settings.cache_clear()
    try:
        for url in (f"{receiver.url}/ok/private", "http://169.254.169.254/latest", "http://[::1]/"):
            with pytest.raises(WebhookAddressNotAllowed):
                service.check_url(url)
        answer = post.send(
            f"{receiver.url}/ok/private",
            "{}",
            headers=post.headers(SECRET, "{}", event="ping", delivery=uuid.uuid4()),
            timeout_s=1,
            allow_private=False,
        )
        assert answer.status_code is None and "private" in (answer.error or "")
        assert not receiver.of("/ok/private")
    finally:
        get_settings.cache_clear()


def test_a_gate_refusing_a_commit_sends_quality_failed_and_job_failed(
    http: httpx.Client, auth: dict[str, str], receiver: Receiver
) -> None:
    ds = make_dataset(http, auth)["id"]
    import_csv(http, auth, ds, b"id,name\n1,ann\n", filename="t.csv")
    rules = [{"name": "names", "table": "t", "column": "name", "check": "not_null"}]
    r = http.put(
        f"/api/v1/datasets/{ds}/quality",
        json={"rules": rules, "threshold": 100, "gate_branches": ["main"]},
        headers=auth,
    )
    assert r.status_code == 200, r.text
    path = f"/ok/quality-{ds}"
    _hook(http, auth, ds, f"{receiver.url}{path}", ["quality.failed", "job.failed", "commit"])
    job = import_csv(http, auth, ds, b"id,name\n1,ann\n2,\n", filename="t.csv")
    assert job["state"] == "failed" and job["error"]["code"] == "quality_gate_failed"
    bodies = {b["event"]: b for b in map(_checked, receiver.wait(path, 2))}
    assert set(bodies) == {"quality.failed", "job.failed"}
    q = bodies["quality.failed"]
    assert q["ref"] == "main" and q["refused"] is True and q["failing"] == ["names"]
    assert q["score"] < q["threshold"] == 100
    assert bodies["job.failed"]["problem"]["code"] == "quality_gate_failed"


def test_a_delivery_past_its_window_is_failed_and_never_posted(
    http: httpx.Client, auth: dict[str, str], receiver: Receiver, stack: dict[str, str]
) -> None:
    """A pending delivery whose window ended without a last attempt (its
    worker died; it never got one) is marked failed by the sweep, and the
    sweep does not send it again."""
    import psycopg

    from features.webhooks import service

    ds = make_dataset(http, auth)["id"]
    hook = _hook(http, auth, ds, f"{receiver.url}/ok/late-{ds}", ["schedule.paused"])
    late = uuid.uuid4()
    with psycopg.connect(stack["DSA_DATABASE_URL"], autocommit=True) as c:
        c.execute(
            "INSERT INTO webhook_delivery (id, webhook_id, event, body, created_at, sent_at)"
            " VALUES (%s, %s, 'ping', '{}', now() - interval '2 days', NULL)",
            (late, hook["id"]),
        )
    service.sweep()
    (delivery,) = _log(http, auth, ds, hook["id"])
    assert delivery["id"] == str(late) and delivery["state"] == "failed"
    time.sleep(1)
    assert not receiver.of(f"/ok/late-{ds}")


def test_a_merge_tells_commit_fast_forward_or_not(
    http: httpx.Client, auth: dict[str, str], receiver: Receiver
) -> None:
    ds = make_dataset(http, auth)["id"]
    import_csv(http, auth, ds, b"id,v\n1,a\n", filename="t.csv")
    r = http.post(f"/api/v1/datasets/{ds}/branches", json={"name": "dev", "from": "main"},
                  headers=auth)  # fmt: skip
    assert r.status_code == 201, r.text
    dev = import_csv(http, auth, ds, b"id,v\n1,a\n2,b\n", filename="t.csv", branch="dev")
    path = f"/ok/merge-{ds}"
    _hook(http, auth, ds, f"{receiver.url}{path}", ["commit"])
    r = http.post(f"/api/v1/datasets/{ds}/merges", json={"source": "dev", "target": "main"},
                  headers=auth)  # fmt: skip
    assert r.status_code == 200 and r.json()["fast_forward"] is True, r.text
    (post,) = receiver.wait(path, 1)
    body = _checked(post)
    assert body["action"] == "merge" and body["fast_forward"] is True
    assert body["ref"] == "main" and body["commit_id"] == dev["commit_id"]

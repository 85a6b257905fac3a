"""Webhooks in the web UI: a dataset's admins add one (its secret shown once),
send it a test event and read its delivery log; others do not see the page."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Worker, login, make_dataset, make_user
from tests.ui.conftest import sign_in


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()


def test_add_a_webhook_send_a_test_event_and_read_its_log(
    browser_client: TestClient, worker: Worker, receiver: str
) -> None:
    c = browser_client
    h = login(c)
    ds = make_dataset(c, h, name=f"hooks-{uuid.uuid4().hex[:8]}")
    csrf = sign_in(c)
    settings = c.get(f"/datasets/{ds['id']}/settings").text
    assert f'href="/datasets/{ds["id"]}/webhooks"' in settings
    page = c.get(f"/datasets/{ds['id']}/webhooks")
    assert page.status_code == 200 and 'id="no-webhooks"' in page.text
    bad = c.post(
        f"/datasets/{ds['id']}/webhooks",
        data={"url": "ftp://example.com", "events": ["commit"], "csrf": csrf},
    )
    assert bad.status_code == 422 and 'class="flash bad"' in bad.text
    made = c.post(
        f"/datasets/{ds['id']}/webhooks",
        data={"url": receiver, "events": ["commit", "job.failed"], "csrf": csrf},
    )
    assert made.status_code == 201 and 'data-testid="secret"' in made.text
    listed = c.get(f"/datasets/{ds['id']}/webhooks").text
    assert receiver in listed and "commit, job.failed" in listed
    assert 'data-testid="secret"' not in listed  # shown once
    hook = c.get(f"/api/v1/datasets/{ds['id']}/webhooks", headers=h).json()["items"][0]
    r = c.post(
        f"/datasets/{ds['id']}/webhooks/{hook['id']}/test",
        data={"csrf": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    deadline = time.monotonic() + 30
    while "delivered" not in (log := c.get(f"/datasets/{ds['id']}/webhooks/{hook['id']}").text):
        assert time.monotonic() < deadline, "the test event was never delivered"
        time.sleep(0.1)
    assert "<code>ping</code>" in log and ">204<" in log
    gone = c.post(
        f"/datasets/{ds['id']}/webhooks/{hook['id']}/delete",
        data={"csrf": csrf},
        follow_redirects=False,
    )
    assert gone.status_code == 303
    assert 'id="no-webhooks"' in c.get(f"/datasets/{ds['id']}/webhooks").text


def test_only_the_datasets_admins_see_its_webhooks(browser_client: TestClient) -> None:
    c = browser_client
    admin = login(c)
    ds = make_dataset(c, admin, name=f"hooks-{uuid.uuid4().hex[:8]}", visibility="internal")
    pw = "password-" + uuid.uuid4().hex[:8]
    reader = make_user(c, admin, password=pw)
    sign_in(c, reader["X-Test-Username"], pw)
    assert c.get(f"/datasets/{ds['id']}/webhooks").status_code == 403
    assert 'id="webhooks-link"' not in c.get(f"/datasets/{ds['id']}/settings").text

"""Schedules in the web UI: a dataset's writers add a scheduled URL import,
see its next time, pause and resume it, run it now (to its job's page) and
delete it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Worker, login, make_dataset, wait_job
from tests.ui.conftest import sign_in


class _File(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b"id,v\n1,a\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def file_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _File)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/daily.csv"
    server.shutdown()


def test_add_pause_run_and_delete_a_schedule(
    browser_client: TestClient, worker: Worker, file_url: str
) -> None:
    c = browser_client
    h = login(c)
    ds = make_dataset(c, h, name=f"sched-{uuid.uuid4().hex[:8]}")
    csrf = sign_in(c)
    assert f'href="/datasets/{ds["id"]}/schedules"' in c.get(f"/datasets/{ds['id']}/settings").text
    page = f"/datasets/{ds['id']}/schedules"
    assert 'id="no-schedules"' in c.get(page).text
    bad = c.post(page, data={"url": file_url, "cron": "whenever", "branch": "main", "csrf": csrf})
    assert bad.status_code == 422 and "not a cron expression" in bad.text
    assert f'value="{file_url}"' in bad.text  # the form keeps what was typed
    made = c.post(
        page,
        data={"url": file_url, "cron": "0 6 * * *", "branch": "main", "csrf": csrf},
        follow_redirects=False,
    )
    assert made.status_code == 303
    listed = c.get(page).text
    assert "<code>0 6 * * *</code>" in listed and "Next run" in listed
    sid = c.get(f"/api/v1/datasets/{ds['id']}/schedules", headers=h).json()["items"][0]["id"]
    form = {"csrf": csrf}
    c.post(f"{page}/{sid}/pause", data={**form, "paused": "true"}, follow_redirects=False)
    assert 'data-testid="paused"' in c.get(page).text
    c.post(f"{page}/{sid}/pause", data={**form, "paused": "false"}, follow_redirects=False)
    assert 'data-testid="paused"' not in c.get(page).text
    ran = c.post(f"{page}/{sid}/run", data=form, follow_redirects=False)
    assert ran.status_code == 303 and "/jobs/" in ran.headers["location"]
    job = wait_job(c, h, ran.headers["location"].rsplit("/", 1)[-1])
    assert job["state"] == "succeeded", job
    gone = c.post(f"{page}/{sid}/delete", data=form, follow_redirects=False)
    assert gone.status_code == 303 and 'id="no-schedules"' in c.get(page).text

"""Quality in the web UI: a badge per commit in history (once the worker has
scored it) and the commit page's report with failing rules and examples."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Worker, import_csv, login, make_dataset
from tests.ui.conftest import sign_in


def test_history_badges_and_the_commit_report(
    browser_client: TestClient, worker: Worker, app: Any
) -> None:
    c = browser_client
    h = login(c)
    ds = make_dataset(c, h, name=f"qpages-{uuid.uuid4().hex[:8]}")
    rules = [
        {"name": "qty cap", "table": "t", "column": "qty", "check": "max", "args": {"value": 10}},
        {"name": "ids", "table": "t", "column": "id", "check": "unique"},
    ]
    r = c.put(f"/api/v1/datasets/{ds['id']}/quality", headers=h,
              json={"rules": rules, "threshold": 100, "gate_branches": []})  # fmt: skip
    assert r.status_code == 200, r.text
    job = import_csv(c, h, ds["id"], b"id,qty\n1,5\n2,50\n3,7\n", filename="t.csv")
    assert job["state"] == "succeeded", job
    sign_in(c)
    deadline = time.monotonic() + 30
    while "quality 50" not in (page := c.get(f"/datasets/{ds['id']}/history").text):
        assert time.monotonic() < deadline, "no quality badge in history"
        time.sleep(0.1)
    assert re.search(r'class="badge quality fail"[^>]*>quality 50<', page)
    commit = c.get(f"/datasets/{ds['id']}/commits/{job['commit_id']}").text
    assert 'id="quality"' in commit and "50 / 100" in commit
    assert "✗ qty cap" in commit and "✓ ids" in commit
    assert "row=1 value=50" in commit

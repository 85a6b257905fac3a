"""A queued import lands only if its author may still write (issue 15,
"Authorization edges"): the role is checked again in the landing
transaction, so a job that waited in the queue while its author was
removed from the dataset, or the dataset was deleted, fails saying so and
commits nothing. Before, both landed."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from core import db
from tests.conftest import Worker, make_dataset, make_user, upload


@pytest.mark.parametrize("what", ["revoked", "deleted", "protected"])
def test_a_job_that_waited_while_its_author_lost_write_does_not_land(
    what: str, http: httpx.Client, auth: dict[str, str], worker: Worker
) -> None:
    ds = make_dataset(http, auth)
    writer = make_user(http, auth)
    name = writer["X-Test-Username"]
    r = http.put(
        f"/api/v1/datasets/{ds['id']}/permissions/{name}", json={"role": "write"}, headers=auth
    )
    assert r.status_code == 200, r.text
    worker.stop()  # the job waits in the queue
    try:
        r = upload(http, writer, ds["id"], b"id,v\n1,a\n2,b\n")
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        if what == "revoked":
            gone = http.delete(f"/api/v1/datasets/{ds['id']}/permissions/{name}", headers=auth)
        elif what == "protected":  # main became its admins' alone (decision 0029)
            r = http.patch(
                f"/api/v1/datasets/{ds['id']}/branches/main", json={"protected": True}, headers=auth
            )
            assert r.status_code == 200, r.text
            gone = httpx.Response(204)
        else:
            gone = http.delete(f"/api/v1/datasets/{ds['id']}", headers=auth)
        assert gone.status_code == 204
    finally:
        worker.start()
    # (the job of a deleted dataset is no one's to see over the API: read the row)
    job = _ended_in_db(job_id)
    assert job["state"] == "failed", job
    assert job["error"]["code"] == "no_longer_allowed" and job["error"]["status"] == 403
    assert job["commit_id"] is None
    with db.read() as conn:
        n = conn.execute("SELECT count(*) AS n FROM commit WHERE dataset_id = %s", (ds["id"],))
        assert n.fetchone()["n"] == 1  # the root alone


def _ended_in_db(job_id: str, timeout: float = 60) -> dict[str, Any]:
    from features.jobs import service as jobs_service

    deadline = time.monotonic() + timeout
    while True:
        with db.read() as conn:
            job = jobs_service.get(conn, uuid.UUID(job_id))
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return dict(job)
        assert time.monotonic() < deadline, job
        time.sleep(0.1)

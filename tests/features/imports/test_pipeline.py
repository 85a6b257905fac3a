"""The pipeline's edges: a job whose stored params no version of the code
wrote fails at once with the internal-error problem (it is not retried until
the reconciler gives up), and the job's upload goes with it."""

from __future__ import annotations

import uuid
from typing import Any

from core import db
from features.imports import pipeline
from features.jobs import service as jobs_service
from tests.conftest import make_dataset


def test_a_job_with_unreadable_params_fails_at_once(client: Any, admin: dict[str, str]) -> None:
    ds = make_dataset(client, admin)
    with db.transaction() as conn:
        job = jobs_service.create(
            conn,
            kind="import",
            dataset_id=uuid.UUID(ds["id"]),
            ref_name="main",
            upload_id=None,
            params={"mode": "sideways"},
            total_bytes=None,
            created_by=None,
        )
    pipeline.run(job["id"])
    out = client.get(f"/api/v1/jobs/{job['id']}", headers=admin).json()
    assert out["state"] == "failed" and out["error"]["code"] == "internal", out
    assert "Traceback" not in str(out["error"])


def test_stale_uploads_are_cleaned_unless_a_job_still_needs_them(
    client: Any, admin: dict[str, str]
) -> None:
    """The hourly ``imports.clean_uploads``: an upload no job will read (its
    request refused, its API killed before the job was made) goes once older
    than the retention; one a queued job waits for stays, however old."""
    import os
    import time

    from core.storage import LocalStore, get_store
    from features.imports import service as imports_service

    ds = make_dataset(client, admin)
    store = get_store()
    assert isinstance(store, LocalStore)
    orphan, waiting, fresh = (imports_service.upload_key(uuid.uuid4()) for _ in range(3))
    for key in (orphan, waiting, fresh):
        store.put(key, b"a,b\n1,2\n")
    long_ago = time.time() - 7200
    for key in (orphan, waiting):
        os.utime(store._path(key), (long_ago, long_ago))  # noqa: SLF001
    upload_id = uuid.UUID(waiting.rsplit("/", 1)[1])
    with db.transaction() as conn:
        conn.execute(
            "INSERT INTO upload (id, dataset_id, object_key, filename, size, blake3)"
            " VALUES (%s, %s, %s, 't.csv', 8, '')",
            (upload_id, ds["id"], waiting),
        )
        job = jobs_service.create(
            conn,
            kind="import",
            dataset_id=uuid.UUID(ds["id"]),
            ref_name="main",
            upload_id=upload_id,
            params={},
            total_bytes=8,
            created_by=None,
        )
    try:
        assert imports_service.clean_uploads(older_than_s=3600) == 1
        assert not store.exists(orphan) and store.exists(waiting) and store.exists(fresh)
    finally:
        with db.transaction() as conn:
            conn.execute("UPDATE job SET state = 'cancelled' WHERE id = %s", (job["id"],))
    assert imports_service.clean_uploads(older_than_s=3600) == 1  # its job ended: it goes
    assert not store.exists(waiting) and store.exists(fresh)
    store.delete(fresh)

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

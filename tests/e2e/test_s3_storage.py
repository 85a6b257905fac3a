"""The whole stack on an S3 bucket (issue 13, decision 0020): a real API and
real worker processes with ``DSA_STORAGE_URL=s3://…`` against an
S3-protocol server on 127.0.0.1 (moto in server mode, started here), their
own database and Redis database: a first import, a re-upload through the
line path, pages, a compare, every export format and a ranged Parquet
read, with every object in the bucket and none in the home directory; and
nodes that share nothing but PostgreSQL, Redis and the bucket (each worker
its own ``DSA_HOME``): one takes the line path on another's index, and one
finishes the import of another killed mid-way, with exactly one commit."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import psycopg
import pytest
from psycopg import sql

from tests.conftest import ADMIN_PASSWORD, _spawn, _stop, _with_db, wait_api_ready


@pytest.fixture(scope="module")
def s3_api(stack: dict[str, str]) -> Iterator[dict[str, Any]]:
    from moto.server import ThreadedMotoServer

    from core.embedded import free_port

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    bucket = f"dsa-{uuid.uuid4().hex[:12]}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")).close()
    server_url = stack["DSA_DATABASE_URL"].rsplit("/", 1)[0] + "/postgres"
    db_name = f"dsa_s3_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db_name)))
    tmp = Path(tempfile.mkdtemp(prefix="dsa-s3-"))
    home = tmp / "home"
    home.mkdir()
    env = {
        **stack,
        "DSA_HOME": str(home),
        "DSA_DATABASE_URL": _with_db(server_url, db_name),
        "DSA_REDIS_URL": stack["DSA_REDIS_URL"].rsplit("/", 1)[0] + "/7",  # its own queue
        "DSA_STORAGE_URL": f"s3://{bucket}/deployment-1",
        "DSA_S3_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "dsa-test",
        "AWS_SECRET_ACCESS_KEY": "dsa-test-secret",
        "AWS_REGION": "us-east-1",
    }
    migrate = subprocess.run(
        [*_python(), "-m", "api.cli", "migrate"], env={**os.environ, **env}, capture_output=True
    )
    assert migrate.returncode == 0, migrate.stderr.decode(errors="replace")
    workers = [_start_worker(env, home)]
    api_port = free_port()
    api = _spawn(["api", "--host", "127.0.0.1", "--port", str(api_port)], env, home / "api.log")
    url = f"http://127.0.0.1:{api_port}"
    try:
        wait_api_ready(url, api, home / "api.log")
        with httpx.Client(base_url=url, timeout=60) as client:
            token = client.post(
                "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
            ).json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            yield {
                "client": client,
                "home": home,
                "tmp": tmp,
                "env": env,
                "workers": workers,
                "endpoint": endpoint,
                "bucket": bucket,
                "server": server,
            }
    finally:
        _stop(api)
        for w in workers:
            _stop(w)
        with contextlib.suppress(Exception):  # the last test stops it first
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db_name))
            )


def _start_worker(env: dict[str, str], home: Path) -> subprocess.Popen[bytes]:
    """A worker node: its own DSA_HOME (scratch, no objects), ready to take tasks."""
    home.mkdir(parents=True, exist_ok=True)
    log = home / "worker.log"
    proc = _spawn(["worker", "--concurrency", "1"], {**env, "DSA_HOME": str(home)}, log)
    deadline = time.monotonic() + 60
    while b" ready." not in (log.read_bytes() if log.exists() else b""):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.2)
    return proc


def _python() -> list[str]:
    import sys

    return [sys.executable]


def _import(client: httpx.Client, ds: str, frame: pl.DataFrame) -> dict[str, Any]:
    r = client.post(
        f"/api/v1/datasets/{ds}/refs/main/uploads", files={"file": ("t.csv", frame.write_csv())}
    )
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 60
    while (job := client.get(r.json()["links"]["job"]).json())["state"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["state"] == "succeeded", job
    return dict(job)


def _bucket_keys(endpoint: str, bucket: str) -> list[str]:
    import boto3
    from botocore.config import Config

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="dsa-test",
        aws_secret_access_key="dsa-test-secret",
        config=Config(s3={"addressing_style": "path"}),
    )
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_a_dataset_lives_in_the_bucket(s3_api: dict[str, Any]) -> None:
    client = s3_api["client"]
    ds = client.post("/api/v1/datasets", json={"name": f"s3-{uuid.uuid4().hex[:8]}"}).json()["id"]
    first = pl.DataFrame({"id": range(5000), "v": [i * 2 for i in range(5000)]})
    v1 = _import(client, ds, first)
    edited = first.with_columns(
        pl.when(pl.col("id") % 50 == 0).then(-1).otherwise(pl.col("v")).alias("v")
    )
    v2 = _import(client, ds, edited)
    assert v2["result"].get("parsed_rows") == 100  # the line path: only the changed lines

    page = client.get(f"/api/v1/datasets/{ds}/refs/main/data", params={"offset": 50, "limit": 2})
    assert page.status_code == 200 and page.json()["rows"] == [[50, -1], [51, 102]]
    diff = client.get(f"/api/v1/datasets/{ds}/compare/{v1['commit_id']}...{v2['commit_id']}")
    assert diff.status_code == 200 and diff.json()["summary"]["modified"] == 100
    for fmt in ("csv", "tsv", "parquet", "arrow", "ndjson", "xlsx"):
        r = client.get(f"/api/v1/datasets/{ds}/refs/main/export", params={"format": fmt})
        assert r.status_code == 200 and r.content, (fmt, r.text[:200])
    exported = pl.read_parquet(
        io.BytesIO(client.get(f"/api/v1/datasets/{ds}/refs/main/export?format=parquet").content)
    )
    assert exported.equals(edited)
    ranged = client.get(
        f"/api/v1/datasets/{ds}/refs/main/export?format=parquet", headers={"Range": "bytes=0-3"}
    )
    assert ranged.status_code == 206 and ranged.content == b"PAR1"

    keys = _bucket_keys(s3_api["endpoint"], s3_api["bucket"])
    assert all(k.startswith("deployment-1/") for k in keys)
    kinds = {k.split("/")[1] for k in keys}
    assert {"chunks", "manifests", "schemas", "commits", "lines"} <= kinds  # lines: the index
    assert not any("/uploads/" in k for k in keys)  # each import deleted its upload
    assert not any((s3_api["home"] / "objects").rglob("*.*"))  # nothing stored locally
    # what the nodes read of the bucket, they keep in their cache (DSA_CACHE_DIR)
    cached = {
        p.name.rsplit(".", 1)[1] for p in (s3_api["home"] / "cache").rglob("*") if p.is_file()
    }
    assert {"size", "all", "0"} <= cached


def test_gc_fsck_backup_and_restore_work_on_the_bucket(s3_api: dict[str, Any]) -> None:
    """dsa gc deletes an orphan from the bucket and keeps what commits use;
    fsck is clean after; a backup of the bucket's installation restores into
    a new embedded home (file://), where fsck is clean too."""
    import boto3
    from botocore.config import Config

    client, env = s3_api["client"], {**os.environ, **s3_api["env"]}
    name = f"s3-gc-{uuid.uuid4().hex[:8]}"
    ds = client.post("/api/v1/datasets", json={"name": name}).json()["id"]
    frame = pl.DataFrame({"id": range(3000), "v": [f"x{i}" for i in range(3000)]})
    _import(client, ds, frame)
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_api["endpoint"],
        region_name="us-east-1",
        aws_access_key_id="dsa-test",
        aws_secret_access_key="dsa-test-secret",
        config=Config(s3={"addressing_style": "path"}),
    )
    orphan = f"deployment-1/chunks/{uuid.uuid4().hex * 2}"
    s3.put_object(Bucket=s3_api["bucket"], Key=orphan, Body=b"left by a failed import")
    time.sleep(1.1)  # S3 times have whole seconds: the orphan is then before the cutoff

    def cli(*args: str, environ: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*_python(), "-m", "api.cli", *args],
            env=environ,
            capture_output=True,
            text=True,
            timeout=300,
        )

    gc = cli("gc", "--grace", "0", "--force", "--json")
    assert gc.returncode == 0, gc.stderr
    assert json.loads(gc.stdout.splitlines()[-1])["summary"]["deleted_objects"] >= 1
    keys = _bucket_keys(s3_api["endpoint"], s3_api["bucket"])
    assert orphan not in keys and any("/chunks/" in k for k in keys)
    fsck = cli("fsck", "--deep", "--dataset", name)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    target = s3_api["tmp"] / "backup"
    backup = cli("backup", str(target), "--json")
    assert backup.returncode == 0, backup.stderr
    assert json.loads(backup.stdout.splitlines()[-1])["objects_copied"] > 0
    plain = {k: v for k, v in os.environ.items() if not k.startswith(("DSA_", "AWS_"))}
    home = s3_api["tmp"] / "restored"
    restored = cli("restore", str(target), "--home", str(home), environ=plain)
    assert restored.returncode == 0, restored.stderr
    fsck = cli("fsck", "--home", str(home), "--deep", "--dataset", name, environ=plain)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


@pytest.mark.parametrize("command", [["api", "--port", "1"], ["worker"]])
def test_processes_refuse_to_start_on_a_bucket_they_cannot_use(
    s3_api: dict[str, Any], stack: dict[str, str], command: list[str]
) -> None:
    env = {
        **os.environ,
        **stack,
        "DSA_STORAGE_URL": "s3://no-such-bucket-for-dsa/p",
        "DSA_S3_ENDPOINT_URL": s3_api["endpoint"],
        "AWS_ACCESS_KEY_ID": "dsa-test",
        "AWS_SECRET_ACCESS_KEY": "dsa-test-secret-never-printed",
        "AWS_REGION": "us-east-1",
    }
    out = subprocess.run(
        [*_python(), "-m", "api.cli", *command], env=env, capture_output=True, timeout=60
    )
    err = out.stderr.decode(errors="replace")
    assert out.returncode == 2, err
    assert "DSA_STORAGE_URL" in err and "no-such-bucket-for-dsa" in err
    assert "dsa-test-secret-never-printed" not in err + out.stdout.decode(errors="replace")


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """The node goes away: the worker and its pool and import processes."""
    import psutil

    for p in [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            os.kill(p.pid, signal.SIGKILL)
    proc.wait(10)


def test_nodes_share_nothing_but_the_database_the_broker_and_the_bucket(
    s3_api: dict[str, Any],
) -> None:
    client, env, workers = s3_api["client"], s3_api["env"], s3_api["workers"]
    ds = client.post("/api/v1/datasets", json={"name": f"nodes-{uuid.uuid4().hex[:8]}"}).json()[
        "id"
    ]
    first = pl.DataFrame({"id": range(300_000), "v": [i % 1000 for i in range(300_000)]})
    v1 = _import(client, ds, first)  # on the first node
    _stop(workers.pop())
    workers.append(_start_worker(env, s3_api["tmp"] / "node-b"))
    edited = first.with_columns(
        pl.when(pl.col("id") % 1000 == 0).then(-1).otherwise(pl.col("v")).alias("v")
    )
    v2 = _import(client, ds, edited)  # another node, its own empty home
    assert v2["result"].get("parsed_rows") == 300  # by lines, on the first node's index

    # the node running an import goes away; another finishes it
    again = edited.with_columns((pl.col("v") + 1).alias("v"))
    r = client.post(
        f"/api/v1/datasets/{ds}/refs/main/uploads", files={"file": ("t.csv", again.write_csv())}
    )
    job_url = r.json()["links"]["job"]
    deadline = time.monotonic() + 60
    while (job := client.get(job_url).json())["state"] != "running":
        assert job["state"] == "queued" and time.monotonic() < deadline, job
        time.sleep(0.02)
    _kill_tree(workers.pop())
    workers.append(_start_worker(env, s3_api["tmp"] / "node-c"))
    reconcile = (
        "from features.jobs import service; import sys; "
        "sys.exit(0 if service.reconcile(stale_after_s=0.5) else 3)"
    )
    deadline = time.monotonic() + 60
    # the reconciler (beat, every 30 s) sends the quiet job again, once
    while subprocess.run([*_python(), "-c", reconcile], env={**os.environ, **env}).returncode:
        assert time.monotonic() < deadline, "the reconciler never sent the job again"
        time.sleep(1)
    while (job := client.get(job_url).json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, "the job was never finished"
        time.sleep(0.5)
    assert job["state"] == "succeeded", job
    history = client.get(f"/api/v1/datasets/{ds}/commits").json()["items"]
    assert [c["id"] for c in history[:3]] == [job["commit_id"], v2["commit_id"], v1["commit_id"]]
    page = client.get(f"/api/v1/datasets/{ds}/refs/main/data", params={"limit": 2}).json()
    assert page["rows"] == [[0, 0], [1, 2]]  # -1 + 1, 1 + 1


def test_stored_parquet_exports_may_be_served_by_the_bucket(s3_api: dict[str, Any]) -> None:
    """``DSA_EXPORT_REDIRECT=true``: a GET of a stored Parquet export, once
    the reader is authorised, is redirected to a short-lived presigned URL
    of the bucket, which serves the file and its ranges itself."""
    from core.embedded import free_port

    client, env = s3_api["client"], s3_api["env"]
    ds = client.post("/api/v1/datasets", json={"name": f"redir-{uuid.uuid4().hex[:8]}"}).json()
    frame = pl.DataFrame({"id": range(20_000), "v": [f"v{i}" for i in range(20_000)]})
    _import(client, ds["id"], frame)
    port = free_port()
    home = s3_api["tmp"] / "api-redirect"
    home.mkdir()
    api = _spawn(
        ["api", "--host", "127.0.0.1", "--port", str(port)],
        {**env, "DSA_HOME": str(home), "DSA_EXPORT_REDIRECT": "true"},
        home / "api.log",
    )
    url = f"http://127.0.0.1:{port}"
    path = f"/api/v1/datasets/{ds['id']}/refs/main/export?format=parquet"
    try:
        wait_api_ready(url, api, home / "api.log")
        with httpx.Client(base_url=url, timeout=60, headers=client.headers) as c:
            first = c.get(path)  # not stored yet: streamed (and stored) by the API
            assert first.status_code == 200
            again = c.get(path)
            assert (
                again.status_code == 307 and again.headers["cache-control"] == "private, no-store"
            )
            location = again.headers["location"]
            assert location.startswith(s3_api["endpoint"]) and "X-Amz-Signature=" in location
            assert "dsa-test-secret" not in location
            served = httpx.get(location)  # no credentials of DSA's or the bucket's
            assert served.content == first.content
            assert ".parquet" in served.headers["content-disposition"]
            ranged = c.get(path, headers={"Range": "bytes=0-3"}, follow_redirects=True)
            assert ranged.status_code == 206 and ranged.content == b"PAR1"
            head = c.head(path)  # sizes for readers: still the API's answer
            assert head.status_code == 200 and int(head.headers["content-length"]) == len(
                first.content
            )
            anonymous = httpx.get(url + path)  # a private dataset: no URL for strangers
            assert anonymous.status_code in (401, 404) and "location" not in anonymous.headers
            link = c.post(
                f"/api/v1/datasets/{ds['id']}/refs/main/export-links", json={"format": "parquet"}
            ).json()["url"]
            assert pl.scan_parquet(link).collect().equals(frame)  # polars follows it
    finally:
        _stop(api)


def test_a_bucket_that_stops_answering_gets_clear_503s_and_the_api_stays_up(
    s3_api: dict[str, Any],
) -> None:
    """Runs last: it stops the S3 server. An import under way fails with the
    object store's problem and commits nothing; a read that needs an object
    gets a 503 problem naming the object store (never a 500 or a trace); an
    upload is refused with nothing recorded; the API keeps answering."""
    client = s3_api["client"]
    ds = client.post("/api/v1/datasets", json={"name": f"down-{uuid.uuid4().hex[:8]}"}).json()["id"]
    job = _import(client, ds, pl.DataFrame({"id": range(100), "v": range(100)}))
    before = client.get(f"/api/v1/datasets/{ds}/commits").json()["total"]
    big = pl.DataFrame({"id": range(600_000), "v": [i % 997 for i in range(600_000)]})
    r = client.post(
        f"/api/v1/datasets/{ds}/refs/main/uploads", files={"file": ("t.csv", big.write_csv())}
    )
    job_url = r.json()["links"]["job"]
    deadline = time.monotonic() + 60
    while (running := client.get(job_url).json())["state"] != "running":
        assert running["state"] == "queued" and time.monotonic() < deadline, running
        time.sleep(0.02)
    s3_api["server"].stop()
    deadline = time.monotonic() + 120
    while (failed := client.get(job_url).json())["state"] == "running":
        assert time.monotonic() < deadline, "the import never gave up"
        time.sleep(0.2)
    assert failed["state"] == "failed", failed
    assert failed["error"]["code"] == "object_store_unavailable", failed["error"]
    assert "Traceback" not in str(failed["error"])

    page = client.get(f"/api/v1/datasets/{ds}/refs/{job['commit_id']}/data")
    assert page.status_code == 503, page.text
    problem = page.json()
    assert problem["code"] == "object_store_unavailable" and "Traceback" not in page.text
    assert page.headers["content-type"].startswith("application/problem+json")

    r = client.post(
        f"/api/v1/datasets/{ds}/refs/main/uploads", files={"file": ("t.csv", b"id,v\n1,2\n")}
    )
    assert r.status_code == 503 and r.json()["code"] == "object_store_unavailable", r.text
    assert client.get(f"/api/v1/datasets/{ds}/commits").json()["total"] == before
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["objects"] != "ok"

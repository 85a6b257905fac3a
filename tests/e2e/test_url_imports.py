"""Imports from URLs, against a real HTTP server on this machine."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import blake3
import httpx
import pytest

from tests.conftest import make_dataset, wait_job

CSV = b"id,name\n1,ann\n2,bob\n"


class _Files(BaseHTTPRequestHandler):
    hits: dict[str, int] = {}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path == "/data.csv" or self.path.startswith("/signed.csv?"):
            self._send(200, CSV)
        elif self.path == "/flaky.csv" and self.hits[self.path] <= 2:
            self._send(503, b"busy")
        elif self.path == "/flaky.csv":
            self._send(200, CSV)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/data.csv")
            self.end_headers()
        else:
            self._send(404, b"nope")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def files() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _import(http: httpx.Client, auth: dict[str, str], ds: str, **body: Any) -> dict[str, Any]:
    r = http.post(f"/api/v1/datasets/{ds}/refs/main/imports", json=body, headers=auth)
    assert r.status_code == 202, r.text
    return wait_job(http, auth, r.json()["job_id"])


def test_import_from_a_url_with_its_checksum(
    http: httpx.Client, auth: dict[str, str], files: str
) -> None:
    ds = make_dataset(http, auth)["id"]
    digest = blake3.blake3(CSV).hexdigest()
    job = _import(http, auth, ds, url=f"{files}/data.csv", checksum=f"blake3:{digest}")
    assert job["state"] == "succeeded", job
    assert job["progress"]["total_bytes"] == len(CSV)
    rows = http.get(f"/api/v1/datasets/{ds}/refs/main/data", headers=auth).json()["rows"]
    assert rows == [[1, "ann"], [2, "bob"]]
    detail = http.get(f"/api/v1/datasets/{ds}/commits/{job['commit_id']}", headers=auth).json()
    src = detail["provenance"]["source"]
    assert src["url"] == f"{files}/data.csv" and src["blake3"] == digest
    assert src["sha256"] == hashlib.sha256(CSV).hexdigest()
    assert detail["message"] == f"Import {files}/data.csv"
    assert detail["tables"][0]["name"] == "data"


def test_secrets_in_the_url_are_never_shown(
    http: httpx.Client, auth: dict[str, str], files: str
) -> None:
    """A pre-signed query string and user:password in the URL stay out of the
    commit message, provenance and errors, which every reader of the
    dataset sees (issue 15, "Secrets in URLs"); a digest tells runs apart."""
    ds = make_dataset(http, auth)["id"]
    host = files.removeprefix("http://")
    url = f"http://alice:s3cret@{host}/signed.csv?X-Amz-Signature=deadbeef&X-Amz-Credential=AK"
    job = _import(http, auth, ds, url=url)
    assert job["state"] == "succeeded", job
    detail = http.get(f"/api/v1/datasets/{ds}/commits/{job['commit_id']}", headers=auth)
    assert (
        "s3cret" not in detail.text and "deadbeef" not in detail.text and "alice" not in detail.text
    )
    src = detail.json()["provenance"]["source"]
    assert src["url"] == f"http://{host}/signed.csv?<redacted>"
    assert detail.json()["message"] == f"Import http://{host}/signed.csv?<redacted>"
    assert len(src["url_digest"]) == 32
    failed = _import(http, auth, ds, url=f"http://bob:pw@{host}/gone.csv?token=topsecret")
    assert failed["state"] == "failed"
    text = str(failed["error"])
    assert "topsecret" not in text and "bob" not in text and "/gone.csv?<redacted>" in text


def test_mirrors_redirects_and_retries(
    http: httpx.Client, auth: dict[str, str], files: str
) -> None:
    ds = make_dataset(http, auth)["id"]
    job = _import(http, auth, ds, urls=[f"{files}/missing.csv", f"{files}/moved"], table="t")
    assert job["state"] == "succeeded", job
    detail = http.get(f"/api/v1/datasets/{ds}/commits/{job['commit_id']}", headers=auth).json()
    assert detail["provenance"]["source"]["url"] == f"{files}/data.csv"
    job = _import(http, auth, ds, url=f"{files}/flaky.csv", table="t2")
    assert job["state"] == "succeeded", job  # two 503s, then the file
    assert _Files.hits["/flaky.csv"] == 3


def test_checksum_mismatch_and_dead_urls_fail_clearly(
    http: httpx.Client, auth: dict[str, str], files: str
) -> None:
    ds = make_dataset(http, auth)["id"]
    wrong = "sha256:" + "0" * 64
    job = _import(http, auth, ds, url=f"{files}/data.csv", checksum=wrong)
    assert job["state"] == "failed"
    err = job["error"]
    assert err["code"] == "checksum_mismatch" and err["expected"] == wrong
    assert err["actual"] == "sha256:" + hashlib.sha256(CSV).hexdigest()
    job = _import(http, auth, ds, url=f"{files}/missing.csv")
    assert job["state"] == "failed" and job["error"]["code"] == "url_unreachable"
    assert http.get(f"/api/v1/datasets/{ds}/commits", headers=auth).json()["total"] == 1


def test_bad_requests(http: httpx.Client, auth: dict[str, str]) -> None:
    ds = make_dataset(http, auth)["id"]
    url = f"/api/v1/datasets/{ds}/refs/main/imports"
    for body in (
        {},
        {"url": "ftp://example.com/x.csv"},
        {"url": "http://example.com/x.csv", "checksum": "md5:abc"},
        {"url": "http://example.com/x.csv", "mode": "sideways"},
    ):
        r = http.post(url, json=body, headers=auth)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"]
    r = http.post(url, json={"url": "http://example.com/x.docx"}, headers=auth)
    assert r.status_code == 415

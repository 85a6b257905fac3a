"""Observability (issue 14): every request gets an id (the caller's
``X-Request-ID`` when sane, else a new one), echoed back and written with
one JSON access-log line; ``/metrics`` lists what an operator alerts on."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from features.integrity import service as integrity
from tests.conftest import login, make_dataset, upload, wait_job


def _eventually(look: Any, timeout: float = 10) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := look()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


def _access_lines(err: str) -> list[dict[str, Any]]:
    out = []
    for line in err.splitlines():
        if line.startswith("{") and '"event": "request"' in line:
            out.append(json.loads(line))
    return out


def test_a_request_id_is_taken_or_made_echoed_and_logged(
    api_url: str, stack: dict[str, str]
) -> None:
    """Over real HTTP, against the API process, whose log is a file; the
    id of an upload's request is followed into the worker's log."""
    client = httpx.Client(base_url=api_url, timeout=60)
    admin = login(client)
    ds = make_dataset(client, admin)
    r = client.get(
        f"/api/v1/datasets/{ds['id']}", headers={**admin, "X-Request-ID": "trace-42.a:b"}
    )
    assert r.status_code == 200 and r.headers["x-request-id"] == "trace-42.a:b"
    # a trusted proxy (DSA_TRUSTED_PROXIES, 127.0.0.1 by default) that says
    # it took the request over https: the API answers as over https
    proxied = client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" in proxied.headers
    assert "strict-transport-security" not in client.get("/healthz").headers
    made = client.get("/healthz", headers={"X-Request-ID": "no spaces allowed"})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert (
        client.get("/healthz", headers={"X-Request-ID": "x" * 129}).headers["x-request-id"]
        != "x" * 129
    )
    home = Path(stack["DSA_HOME"])
    # the line is written once the answer has gone: wait for it
    mine = _eventually(
        lambda: [
            x
            for x in _access_lines((home / "api.log").read_text())
            if x.get("request_id") == "trace-42.a:b"
        ]
    )
    assert len(mine) == 1, mine
    line = mine[0]
    me = client.get("/api/v1/users/me", headers=admin).json()
    assert line["method"] == "GET" and line["status"] == 200
    assert line["route"] == "/api/v1/datasets/{dataset_id}"
    assert line["user_id"] == me["id"] and line["bytes"] > 0 and line["ms"] >= 0

    rid = f"upload-{uuid.uuid4().hex}"
    r = upload(client, {**admin, "X-Request-ID": rid}, ds["id"], b"a,b\n1,x\n")
    assert r.status_code == 202 and r.headers["x-request-id"] == rid
    assert wait_job(client, admin, r.json()["job_id"])["state"] == "succeeded"
    done = _eventually(
        lambda: [
            x
            for x in (home / "worker.log").read_text().splitlines()
            if rid in x and "import done" in x
        ]
    )
    assert done


def test_metrics_name_what_an_operator_alerts_on(client: Any, admin: dict[str, str]) -> None:
    integrity.gc(grace_s=3600, dry_run=True)
    text = client.get("/metrics").text
    for name in (
        "dsa_http_request_seconds_bucket",
        "dsa_gc_runs_total",
        "dsa_jobs",
        "dsa_queue_length",
        "dsa_jobs_finished_total",
        "dsa_job_seconds",
        "dsa_import_rows_total",
        "dsa_object_store_errors_total",
        "dsa_node_cache_reads_total",
    ):
        assert f"# TYPE {name} " in text or f"\n{name}" in text, name
    assert 'dsa_gc_runs_total{dry_run="true"}' in text


def test_every_answer_carries_the_security_headers_and_https_adds_hsts(app: Any) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app, raise_server_exceptions=False) as plain:
        for path in ("/healthz", "/signin", "/api/v1/nope"):
            h = plain.get(path).headers
            assert h["x-content-type-options"] == "nosniff", path
            assert h["x-frame-options"] == "DENY" and h["referrer-policy"] == "same-origin"
            assert "frame-ancestors 'none'" in h["content-security-policy"]
            assert "strict-transport-security" not in h
    with TestClient(app, base_url="https://dsa.example") as tls:
        r = tls.get("/healthz")
        assert r.headers["strict-transport-security"].startswith("max-age=")


def test_cookies_are_secure_over_https_and_when_the_setting_says_so(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind an ingress that terminates TLS the app sees http unless the
    proxy is trusted (DSA_TRUSTED_PROXIES); DSA_COOKIE_SECURE forces it."""
    from fastapi.testclient import TestClient

    from core.config import get_settings

    def cookie(base: str) -> str:
        with TestClient(app, base_url=base) as c:
            return c.get("/signin").headers.get("set-cookie", "")

    assert "Secure" in cookie("https://dsa.example")
    assert "Secure" not in cookie("http://dsa.example")
    monkeypatch.setenv("DSA_COOKIE_SECURE", "true")
    get_settings.cache_clear()
    try:
        assert "Secure" in cookie("http://dsa.example")
    finally:
        monkeypatch.delenv("DSA_COOKIE_SECURE")
        get_settings.cache_clear()


def test_pages_allow_no_inline_script_and_the_templates_have_none(app: Any) -> None:
    from fastapi.testclient import TestClient

    from tests.conftest import ROOT

    with TestClient(app, raise_server_exceptions=False) as c:
        page = c.get("/signin")
        policies = page.headers.get_list("content-security-policy")
        assert len(policies) == 1 and "script-src 'self';" in policies[0]
        assert "frame-ancestors 'none'" in policies[0]
        docs = c.get("/docs")  # FastAPI's viewer (its scripts come from a CDN) keeps working
        assert docs.status_code == 200
        assert docs.headers["content-security-policy"] == "frame-ancestors 'none'"
    handler = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
    inline_script = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE)
    for path in (ROOT / "features").glob("*/templates/**/*.html"):
        text = path.read_text()
        assert not handler.search(text), f"{path}: an inline event handler"
        assert not inline_script.search(text), f"{path}: an inline script"

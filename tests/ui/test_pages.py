"""The web UI's pages in-process: sessions, CSRF, every page rendered from the
same services as the API, error pages from the domain errors."""

from __future__ import annotations

import re
import time
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import ADMIN_PASSWORD, Worker, login, make_user
from tests.ui.conftest import csrf_of, sign_in


def _csv(rows: list[tuple[Any, ...]]) -> bytes:
    return ("id,name,qty\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows)).encode()


def _create(c: TestClient, token: str, name: str, **extra: str) -> str:
    r = c.post("/datasets", data={"name": name, "csrf": token, **extra}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return r.headers["location"].rsplit("/", 1)[1]


def _upload(c: TestClient, token: str, ds: str, content: bytes, **fields: str) -> str:
    r = c.post(
        f"/datasets/{ds}/upload",
        files={"file": ("items.csv", content, "text/csv")},
        data={"branch": "main", **fields},
        headers={"X-CSRF-Token": token, "Accept": "application/json"},
    )
    assert r.status_code == 202, r.text
    body = r.json()
    page = body["links"]["page"]
    deadline = time.monotonic() + 60
    while "data-state=" not in (html := c.get(body["links"]["outcome"]).text):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert c.get(page).status_code == 200
    return html


def test_sign_in_sets_an_httponly_lax_cookie_and_rotates_the_session(
    browser_client: TestClient,
) -> None:
    c = browser_client
    first = c.get("/signin")
    assert first.status_code == 200
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    before = csrf_of(first.text)
    r = c.post(
        "/signin",
        data={"username": "admin", "password": "wrong-password", "csrf": before},
        follow_redirects=False,
    )
    assert r.status_code == 401 and "wrong username or password" in r.text
    after = sign_in(c)
    assert after != before  # a new session id on sign-in
    assert "Signed in as" in c.get("/datasets").text
    r = c.post("/signout", data={"csrf": after}, follow_redirects=False)
    assert r.status_code == 303
    assert "Signed in as" not in c.get("/datasets").text


def test_forms_without_the_csrf_token_are_refused(browser_client: TestClient) -> None:
    c = browser_client
    r = c.post("/signin", data={"username": "admin", "password": ADMIN_PASSWORD})
    assert r.status_code == 403 and "security token" in r.text
    token = sign_in(c)
    r = c.post("/datasets", data={"name": "no-token"})
    assert r.status_code == 403
    r = c.post("/datasets", data={"name": "bad-token", "csrf": "0" * 64})
    assert r.status_code == 403
    assert "No dataset matches" in c.get("/datasets?q=no-token").text
    # the API accepts the cookie, but state changes need the header
    r = c.post("/api/v1/datasets", json={"name": "via-cookie"})
    assert r.status_code == 403 and r.json()["code"] == "csrf_failed"
    r = c.post("/api/v1/datasets", json={"name": "via-cookie"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 201, r.text
    assert c.get("/api/v1/users/me").json()["username"] == "admin"


def test_pages_need_a_user_where_the_api_does(browser_client: TestClient) -> None:
    r = browser_client.get(
        "/datasets/00000000-0000-0000-0000-000000000000/upload", follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=")
    r = browser_client.get("/signin?next=//evil.example")
    assert 'value="/datasets"' in r.text  # no open redirect


def test_error_pages_come_from_domain_errors(browser_client: TestClient) -> None:
    c = browser_client
    sign_in(c)
    r = c.get("/datasets/00000000-0000-0000-0000-000000000000")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "dataset_not_found" in r.text and "Traceback" not in r.text
    r = c.get("/datasets/00000000-0000-0000-0000-000000000000", params={"offset": -1})
    assert r.status_code == 422 and "invalid_request" in r.text  # a bad query: invalid


def test_unknown_paths_get_an_html_404_in_the_layout(browser_client: TestClient) -> None:
    c = browser_client
    sign_in(c)
    zero = "00000000-0000-0000-0000-000000000000"
    for path in ("/foo", "/datasets/nope", f"/datasets/{zero}/nope", "/datasets/nope/history"):
        r = c.get(path)
        assert r.status_code == 404, path
        assert r.headers["content-type"].startswith("text/html"), path
        # a dataset may be named in the path: "nope" is one that does not exist
        said = "dataset nope does not exist" if path.startswith("/datasets/nope") else "no page at"
        assert said in r.text and "404 · Not found" in r.text, path
        assert 'class="top"' in r.text and "Signed in as" in r.text  # the site's layout
        assert 'href="/datasets"' in r.text  # a way back
    r = c.post(f"/datasets/{zero}/history", data={"csrf": "x"})
    assert r.status_code == 405 and r.headers["content-type"].startswith("text/html")
    assert "does not take POST requests" in r.text and "GET" in r.headers["allow"]
    # the REST API and clients asking for JSON keep their problem documents
    for path, headers in (("/api/v1/nope", {}), ("/foo", {"Accept": "application/json"})):
        r = c.get(path, headers=headers)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "not_found"


def test_an_admin_deletes_a_dataset_from_its_settings(browser_client: TestClient, app: Any) -> None:
    c = browser_client
    token = sign_in(c)
    name = f"doomed-{time.time_ns()}"
    ds = _create(c, token, name)
    settings = c.get(f"/datasets/{ds}/settings").text
    assert 'id="delete-form"' in settings and 'for="d-confirm"' in settings
    # what it stores (its empty root commit), and what of it no other dataset shares
    assert 'data-testid="storage-bytes">' in settings and " B</strong>" in settings
    assert 'name="csrf"' in settings.split('id="delete-form"')[1].split("</form>")[0]
    # a reader sees no delete form and cannot delete
    with TestClient(app, raise_server_exceptions=False) as other:
        password = f"pw-{time.time_ns()}"
        reader = make_user(other, login(other), password=password)["X-Test-Username"]
        r = c.post(
            f"/datasets/{ds}/permissions", data={"username": reader, "role": "read", "csrf": token}
        )
        assert r.status_code == 200 or r.is_redirect, r.text
        reader_token = sign_in(other, reader, password)
        assert 'id="delete-form"' not in other.get(f"/datasets/{ds}/settings").text
        r = other.post(f"/datasets/{ds}/delete", data={"confirm": name, "csrf": reader_token})
        assert r.status_code == 403
    # no token, or the wrong name: nothing happens
    assert c.post(f"/datasets/{ds}/delete", data={"confirm": name}).status_code == 403
    r = c.post(f"/datasets/{ds}/delete", data={"confirm": "something else", "csrf": token})
    assert r.status_code == 422 and 'id="delete-error"' in r.text and name in r.text
    assert c.get(f"/datasets/{ds}").status_code == 200
    # the right name: soft-deleted, like DELETE /api/v1/datasets/{id}
    r = c.post(
        f"/datasets/{ds}/delete",
        data={"confirm": f" {name} ", "csrf": token},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == f"/datasets?deleted={name}"
    listing = c.get(r.headers["location"]).text
    assert 'id="deleted"' in listing and name in listing
    assert "No dataset matches" in c.get("/datasets", params={"q": name}).text
    assert c.get(f"/datasets/{ds}").status_code == 404
    assert c.get(f"/api/v1/datasets/{ds}").status_code == 404
    assert _create(c, token, name)  # the name is free again


def test_api_tokens_are_listed_created_once_and_revoked(
    browser_client: TestClient, app: Any
) -> None:
    c = browser_client
    r = c.get("/account/tokens", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/signin?next=")
    token = sign_in(c)
    page = c.get("/account/tokens").text
    assert 'href="/account/tokens" aria-current="page"' in page  # linked from the header
    assert 'id="token-form"' in page and 'for="t-name"' in page and 'for="t-exp"' in page
    assert c.post("/account/tokens", data={"name": "no csrf"}).status_code == 403
    r = c.post("/account/tokens", data={"name": "  ", "csrf": token})
    assert r.status_code == 422 and 'role="alert"' in r.text
    name = f"nightly-{time.time_ns()}"
    r = c.post("/account/tokens", data={"name": name, "expires_in_days": "30", "csrf": token})
    assert r.status_code == 201 and r.headers["cache-control"] == "no-store"
    secret = re.search(r'id="t-value" value="(dsa_[^"]+)"', r.text).group(1)  # type: ignore[union-attr]
    assert "shown only this once" in r.text and "Expires" in r.text
    # the token works with the REST API, without the cookie
    with TestClient(app, raise_server_exceptions=False) as api:
        me = api.get("/api/v1/users/me", headers={"Authorization": f"Bearer {secret}"})
        assert me.status_code == 200 and me.json()["username"] == "admin"
        listed = c.get("/account/tokens").text
        assert name in listed and secret not in listed  # never shown again
        token_id = re.search(r'data-token="([0-9a-f-]{36})">\s*<td><strong>' + name, listed)
        assert token_id, listed
        assert c.post(f"/account/tokens/{token_id.group(1)}/delete").status_code == 403
        r = c.post(
            f"/account/tokens/{token_id.group(1)}/delete",
            data={"csrf": token},
            follow_redirects=False,
        )
        assert r.status_code == 303
        after = c.get(r.headers["location"]).text
        assert 'id="revoked"' in after and f'data-token="{token_id.group(1)}"' not in after
        me = api.get("/api/v1/users/me", headers={"Authorization": f"Bearer {secret}"})
        assert me.status_code == 401
    # someone else's (or no longer existing) token: not found
    r = c.post(f"/account/tokens/{token_id.group(1)}/delete", data={"csrf": token})
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")


def test_the_whole_flow_renders(browser_client: TestClient, worker: Worker) -> None:
    c = browser_client
    token = sign_in(c)
    name = f"pages-{time.time_ns()}"
    ds = _create(c, token, name, primary_key="id")
    r = c.post("/datasets", data={"name": name, "csrf": token})
    assert r.status_code == 409 and "already exists" in r.text  # the form again, with the problem
    assert name in c.get("/datasets", params={"q": name}).text
    rows = [(i, f"item{i}", i * 10) for i in range(1, 301)]
    out = _upload(c, token, ds, _csv(rows), message="v1")
    assert 'data-state="succeeded"' in out
    home = c.get(f"/datasets/{ds}", params={"offset": 100, "limit": 50})
    assert home.status_code == 200
    assert "<strong>300</strong> rows" in home.text and "101–150" in home.text
    assert ">item101<" in home.text and ">item100<" not in home.text
    jump = c.get(f"/datasets/{ds}", params={"row": 250, "limit": 25, "col": ["id", "qty"]})
    assert ">250<" in jump.text and "item250" not in jump.text  # name not selected
    edited = list(rows)
    edited[41] = (42, "item42", 4242)
    out = _upload(c, token, ds, _csv(edited), message="v2")
    link = re.search(r'id="compare-link" href="([^"]+)"', out)
    assert link, out
    cmp = c.get(link.group(1).replace("&amp;", "&"))
    assert cmp.status_code == 200
    assert re.search(r'id="n-modified">1<', cmp.text)
    assert cmp.text.count('class="changed"') == 1
    assert re.search(r"<del[^>]*>420</del> → <ins[^>]*>4242</ins>", cmp.text)
    permalink = re.search(r'href="([^"]+)" id="permalink"', cmp.text).group(1)  # type: ignore[union-attr]
    assert c.get(permalink.replace("&amp;", "&")).text.count('class="changed"') == 1
    r = c.get(
        f"/datasets/{ds}/compare", params={"base": "main~", "head": "main"}, follow_redirects=False
    )
    assert r.status_code == 303
    assert c.get(f"/datasets/{ds}/compare/nope...main").status_code == 404
    # refs
    for path, data in (
        ("tags", {"name": "v2", "from": "main", "message": "second"}),
        ("branches", {"name": "fix", "from": "main"}),
    ):
        r = c.post(f"/datasets/{ds}/{path}", data={**data, "csrf": token}, follow_redirects=False)
        assert r.status_code == 303, r.text
    refs = c.get(f"/datasets/{ds}/branches").text
    assert 'data-ref="v2"' in refs and 'data-ref="fix"' in refs
    r = c.post(f"/datasets/{ds}/branches/main/delete", data={"csrf": token})
    assert r.status_code == 409 and "default branch" in r.text
    r = c.post(
        f"/datasets/{ds}/branches/main/protect",
        data={"csrf": token, "protected": "true"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    # edit on the branch and on main, same cell: a conflict listed, then settled
    b = list(edited)
    b[9] = (10, "item10", 1)
    r = c.post(
        f"/datasets/{ds}/upload",
        files={"file": ("items.csv", _csv(b), "text/csv")},
        data={"branch": "fix", "csrf": token},
        follow_redirects=False,
    )
    assert r.status_code == 303  # without JS: to the job's page
    job_page = r.headers["location"]
    deadline = time.monotonic() + 60
    while "data-state=" not in (html := c.get(job_page).text):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert 'data-state="succeeded"' in html
    m = list(edited)
    m[9] = (10, "item10", 2)
    _upload(c, token, ds, _csv(m), message="v3")
    r = c.post(f"/datasets/{ds}/merge", data={"source": "fix", "target": "main", "csrf": token})
    assert r.status_code == 409
    assert 'id="conflicts"' in r.text and "modify/modify" in r.text and "key" in r.text
    r = c.post(
        f"/datasets/{ds}/merge",
        data={"source": "fix", "target": "main", "strategy": "theirs", "csrf": token},
    )
    assert r.status_code == 200 and 'id="merge-result"' in r.text
    hist = c.get(f"/datasets/{ds}/history", params={"ref": "main"})
    assert hist.status_code == 200 and 'class="merge"' in hist.text and "<svg" in hist.text
    commit = re.search(r'data-commit="([0-9a-f]{64})" class="merge"', hist.text).group(1)  # type: ignore[union-attr]
    page = c.get(f"/datasets/{ds}/commits/{commit}")
    assert page.status_code == 200 and "Provenance" in page.text and 'id="summary"' in page.text
    # settings
    r = c.post(
        f"/datasets/{ds}/settings",
        data={
            "name": name,
            "description": "Items we sell",
            "primary_key": "id",
            "visibility": "internal",
            "csrf": token,
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    s = c.get(r.headers["location"]).text
    assert "Items we sell" in s and "Settings saved" in s
    r = c.post(
        f"/datasets/{ds}/permissions",
        data={"username": "nobody-here", "role": "read", "csrf": token},
    )
    assert r.status_code == 404 and "does not exist" in r.text

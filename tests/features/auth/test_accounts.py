"""Accounts and sessions (issue 15): what a token carries is checked against
the database on every use. Each test here failed before the fix it names:
claims were trusted, sign-out and password changes left tokens working, a
token could mint a broader one, and nothing could be disabled."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
import pytest

from tests.conftest import ADMIN_PASSWORD, login, make_dataset, make_user


def _me(client: Any, headers: dict[str, str]) -> Any:
    return client.get("/api/v1/users/me", headers=headers)


def _token(client: Any, headers: dict[str, str], **body: Any) -> Any:
    return client.post("/api/v1/tokens", json={"name": "t", **body}, headers=headers)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_admin_rights_come_from_the_database_not_the_token(
    client: Any, admin: dict[str, str]
) -> None:
    user = make_user(client, admin, is_admin=True)
    name = user["X-Test-Username"]
    assert client.get("/api/v1/users", headers=user).status_code == 200
    r = client.patch(f"/api/v1/users/{name}", json={"is_admin": False}, headers=admin)
    assert r.status_code == 200 and r.json()["is_admin"] is False
    # the same access token, issued while an admin, is no longer one
    assert _me(client, user).json()["is_admin"] is False
    r = client.get("/api/v1/users", headers=user)
    assert r.status_code == 403 and r.json()["code"] == "admin_required"


def test_a_forged_or_old_style_token_is_refused(client: Any, admin: dict[str, str]) -> None:
    """A JWT signed with the raw secret (the old scheme) claiming admin is not accepted."""
    import os

    me = _me(client, admin).json()
    now = int(time.time())
    claims = {"sub": me["id"], "name": "admin", "adm": True, "iat": now, "exp": now + 600}
    forged = jwt.encode(claims, os.environ["DSA_JWT_SECRET"], algorithm="HS256")
    r = _me(client, _bearer(forged))
    assert r.status_code == 401 and r.json()["code"] == "bad_token"


def test_disabling_a_user_stops_sessions_and_tokens_at_once(
    client: Any, admin: dict[str, str]
) -> None:
    password = "password-" + uuid.uuid4().hex[:8]
    user = make_user(client, admin, password=password)
    name = user["X-Test-Username"]
    api = _token(client, user).json()["token"]
    assert _me(client, _bearer(api)).status_code == 200
    r = client.patch(f"/api/v1/users/{name}", json={"disabled": True}, headers=admin)
    assert r.status_code == 200 and r.json()["disabled"] is True
    assert _me(client, user).status_code == 401
    assert _me(client, _bearer(api)).status_code == 401
    r = client.post("/api/v1/auth/login", json={"username": name, "password": password})
    assert r.status_code == 401 and r.json()["code"] == "account_disabled"
    listed = client.get("/api/v1/users", headers=admin).json()["items"]
    assert next(u for u in listed if u["username"] == name)["disabled"] is True
    client.patch(f"/api/v1/users/{name}", json={"disabled": False}, headers=admin)
    assert _me(client, user).status_code == 401  # old sessions stay dead
    assert _me(client, login(client, name, password)).status_code == 200


def test_an_admins_token_for_some_datasets_is_no_administrator(
    client: Any, admin: dict[str, str]
) -> None:
    """Found in review: such a token still created administrators."""
    ds = make_dataset(client, admin)
    limited = _bearer(_token(client, admin, datasets=[ds["id"]]).json()["token"])
    assert _me(client, limited).json()["is_admin"] is False
    r = client.post(
        "/api/v1/users",
        json={"username": f"x-{uuid.uuid4().hex[:6]}", "password": "long-enough"},
        headers=limited,
    )
    assert r.status_code == 403
    assert client.get("/api/v1/audit", headers=limited).status_code == 403


def test_the_password_cannot_be_guessed_through_the_change_form(
    client: Any, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found in review: a read-only token could try current passwords without
    limit and, on a hit, take the account."""
    from core import ratelimit
    from core.config import get_settings

    password = "password-" + uuid.uuid4().hex[:8]
    user = make_user(client, admin, password=password)
    read_only = _bearer(_token(client, user, scopes=["read"]).json()["token"])
    body = {"current_password": password, "new_password": "taken-over-1"}
    r = client.post("/api/v1/users/me/password", json=body, headers=read_only)
    assert r.status_code == 403 and r.json()["code"] == "token_scope"
    monkeypatch.setattr(get_settings(), "rate_limit_login_user", "3/15 minutes")
    wrong = {"current_password": "guess-0000", "new_password": "taken-over-1"}
    try:
        for _ in range(3):
            r = client.post("/api/v1/users/me/password", json=wrong, headers=user)
            assert r.status_code == 401
        r = client.post("/api/v1/users/me/password", json=body, headers=user)
        assert r.status_code == 429  # even the right one, for a while
    finally:
        ratelimit.reset()


def test_a_password_change_signs_out_every_session(client: Any, admin: dict[str, str]) -> None:
    password = "password-" + uuid.uuid4().hex[:8]
    user = make_user(client, admin, password=password)
    name = user["X-Test-Username"]
    other = login(client, name, password)
    api = _token(client, user).json()["token"]
    r = client.post(
        "/api/v1/users/me/password",
        json={"current_password": "not-it-at-all", "new_password": "a-new-password"},
        headers=user,
    )
    assert r.status_code == 401 and r.json()["code"] == "bad_credentials"
    r = client.post(
        "/api/v1/users/me/password",
        json={"current_password": password, "new_password": "a-new-password"},
        headers=user,
    )
    assert r.status_code == 204
    assert _me(client, user).status_code == 401
    assert _me(client, other).status_code == 401
    assert _me(client, _bearer(api)).status_code == 200  # API tokens are revoked one by one
    r = client.post("/api/v1/auth/login", json={"username": name, "password": password})
    assert r.status_code == 401
    assert _me(client, login(client, name, "a-new-password")).status_code == 200


def test_signing_out_voids_the_session_token(app: Any) -> None:
    from fastapi.testclient import TestClient

    from tests.ui.conftest import sign_in

    with TestClient(app, raise_server_exceptions=False) as c:
        csrf = sign_in(c)
        token = c.cookies["dsa_session"].split(".", 1)[1]
        assert _me(c, _bearer(token)).status_code == 200
        assert c.post("/signout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
        r = _me(c, _bearer(token))  # a copy of the cookie no longer works
        assert r.status_code == 401 and r.json()["code"] == "bad_token"


def test_the_last_installation_admin_cannot_be_demoted_or_disabled(
    client: Any, admin: dict[str, str]
) -> None:
    from core import db
    from features.auth import service
    from features.auth.errors import LastInstallationAdmin

    with db.transaction() as conn, conn.transaction(force_rollback=True):
        conn.execute("UPDATE app_user SET is_admin = false WHERE username <> 'admin'")
        with pytest.raises(LastInstallationAdmin):
            service.update_user(conn, "admin", disabled=True)
        with pytest.raises(LastInstallationAdmin):
            service.update_user(conn, "admin", is_admin=False)
    r = client.patch("/api/v1/users/nobody-at-all", json={"disabled": True}, headers=admin)
    assert r.status_code == 404


def test_only_admins_list_and_change_users(client: Any, admin: dict[str, str]) -> None:
    user = make_user(client, admin)
    assert client.get("/api/v1/users", headers=user).status_code == 403
    r = client.patch("/api/v1/users/admin", json={"disabled": True}, headers=user)
    assert r.status_code == 403
    assert _me(client, admin).status_code == 200


def _upload_csv(client: Any, headers: dict[str, str], dataset_id: str) -> Any:
    return client.post(
        f"/api/v1/datasets/{dataset_id}/refs/main/uploads",
        files={"file": ("t.csv", b"a\n1\n", "text/csv")},
        headers=headers,
    )


def test_a_read_scoped_token_reads_and_nothing_more(client: Any, admin: dict[str, str]) -> None:
    owner = make_user(client, admin)
    ds = make_dataset(client, owner)
    read = _bearer(_token(client, owner, scopes=["read"]).json()["token"])
    assert client.get(f"/api/v1/datasets/{ds['id']}", headers=read).status_code == 200
    r = client.patch(f"/api/v1/datasets/{ds['id']}", json={"description": "x"}, headers=read)
    assert r.status_code == 403
    r = _upload_csv(client, read, ds["id"])
    assert r.status_code == 403
    r = client.post("/api/v1/datasets", json={"name": f"ds-{uuid.uuid4().hex[:8]}"}, headers=read)
    assert r.status_code == 403 and r.json()["code"] == "token_scope"
    write = _bearer(_token(client, owner, scopes=["write"]).json()["token"])
    r = client.patch(f"/api/v1/datasets/{ds['id']}", json={"description": "x"}, headers=write)
    assert r.status_code == 403  # admin on the dataset needs the admin scope
    everything = _bearer(_token(client, owner).json()["token"])
    r = client.patch(f"/api/v1/datasets/{ds['id']}", json={"description": "x"}, headers=everything)
    assert r.status_code == 200
    # an installation admin's read token is not an admin's
    admin_read = _bearer(_token(client, admin, scopes=["read"]).json()["token"])
    assert client.get("/api/v1/users", headers=admin_read).status_code == 403
    assert _me(client, admin_read).json()["is_admin"] is False


def test_a_token_for_some_datasets_works_only_there(client: Any, admin: dict[str, str]) -> None:
    owner = make_user(client, admin)
    mine, other = make_dataset(client, owner), make_dataset(client, owner)
    public = make_dataset(client, owner, visibility="public")
    body = _token(client, owner, datasets=[mine["id"]]).json()
    assert body["datasets"] == [mine["id"]]
    h = _bearer(body["token"])
    assert client.get(f"/api/v1/datasets/{mine['id']}", headers=h).status_code == 200
    r = client.get(f"/api/v1/datasets/{other['id']}", headers=h)
    assert r.status_code == 403 and r.json()["code"] == "token_scope"
    assert client.get(f"/api/v1/datasets/{public['id']}", headers=h).status_code == 200
    r = client.patch(f"/api/v1/datasets/{public['id']}", json={"description": "x"}, headers=h)
    assert r.status_code == 403
    names = {
        d["name"] for d in client.get("/api/v1/datasets?per_page=100", headers=h).json()["items"]
    }
    assert mine["name"] in names and other["name"] not in names


def test_a_token_cannot_mint_a_broader_or_longer_lived_one(
    client: Any, admin: dict[str, str]
) -> None:
    owner = make_user(client, admin)
    mine, other = make_dataset(client, owner), make_dataset(client, owner)
    parent = _token(client, owner, scopes=["read"], datasets=[mine["id"]], expires_in_days=7)
    h = _bearer(parent.json()["token"])
    r = _token(client, h, scopes=["write"])
    assert r.status_code == 403 and r.json()["code"] == "token_scope"
    r = _token(client, h, datasets=[mine["id"], other["id"]])
    assert r.status_code == 403
    r = _token(client, h, expires_in_days=30)
    assert r.status_code == 403
    child = _token(client, h)  # unspecified: the parent's limits
    assert child.status_code == 201, child.text
    body = child.json()
    assert body["scopes"] == ["read"] and body["datasets"] == [mine["id"]]
    assert body["expires_at"] == parent.json()["expires_at"]
    # and a limited token may revoke only itself
    r = client.delete(f"/api/v1/tokens/{body['id']}", headers=h)
    assert r.status_code == 403
    r = client.delete(f"/api/v1/tokens/{parent.json()['id']}", headers=h)
    assert r.status_code == 204


def test_revoking_a_token_revokes_every_token_made_with_it(
    client: Any, admin: dict[str, str]
) -> None:
    """Before: a token made with a token outlived its parent's revocation."""
    owner = make_user(client, admin)
    ds = make_dataset(client, owner)
    parent = _token(client, owner, scopes=["write"]).json()
    child = _token(client, _bearer(parent["token"]), scopes=["read"]).json()
    grandchild = _token(client, _bearer(child["token"]), datasets=[ds["id"]]).json()
    sibling = _token(client, owner, scopes=["read"]).json()
    assert child["parent_id"] == parent["id"] and grandchild["parent_id"] == child["id"]
    assert sibling["parent_id"] is None
    assert client.delete(f"/api/v1/tokens/{parent['id']}", headers=owner).status_code == 204
    for gone in (parent, child, grandchild):
        r = client.get("/api/v1/users/me", headers=_bearer(gone["token"]))
        assert r.status_code == 401, gone["name"]
    assert client.get("/api/v1/users/me", headers=_bearer(sibling["token"])).status_code == 200
    left = client.get("/api/v1/tokens", headers=owner).json()["items"]
    assert [t["id"] for t in left] == [sibling["id"]]
    entries = client.get("/api/v1/audit", params={"action": "token.revoke"}, headers=admin)
    mine = [e for e in entries.json()["items"] if e["details"]["token_id"] == parent["id"]]
    assert sorted(mine[0]["details"]["made_with_it"]) == sorted([child["id"], grandchild["id"]])


def test_secrets_are_refused_when_placeholders_or_short(tmp_path: Any) -> None:
    from core.config import Settings

    for bad in ("CHANGE-ME-to-a-long-random-string", "short-secret", ""):
        assert Settings(jwt_secret=bad or None, home=tmp_path).secret_problem()
    good = Settings(jwt_secret="x" * 40, home=tmp_path)
    assert good.secret_problem() is None
    keys = {good.key(p) for p in ("jwt", "csrf", "export-link", "line-hash")}
    assert len(keys) == 4 and b"x" * 40 not in keys and all(len(k) == 32 for k in keys)


@pytest.mark.parametrize("command", ["api", "worker", "beat"])
def test_distributed_processes_refuse_a_placeholder_secret(command: str) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "DSA_JWT_SECRET": "CHANGE-ME-to-a-long-random-string"}
    r = subprocess.run(
        [sys.executable, "-m", "api.cli", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "placeholder" in r.stderr


def test_the_first_admins_password_file_is_private_from_the_start(tmp_path: Any) -> None:
    import os
    import stat

    from api.cli import _write_private

    old = os.umask(0)
    try:
        path = tmp_path / "admin-password"
        _write_private(path, "secret\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        path.chmod(0o644)
        _write_private(path, "again\n")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == "again\n"
        link = tmp_path / "link"
        link.symlink_to(tmp_path / "elsewhere")
        with pytest.raises(OSError):
            _write_private(link, "x")
        assert not (tmp_path / "elsewhere").exists()
    finally:
        os.umask(old)


def test_a_generated_password_must_be_changed_at_first_sign_in(app: Any, client: Any) -> None:
    from fastapi.testclient import TestClient

    from core import db
    from features.auth import service
    from tests.ui.conftest import csrf_of

    name, password = f"first-{uuid.uuid4().hex[:8]}", "generated-" + uuid.uuid4().hex[:8]
    with db.transaction() as conn:
        assert service.ensure_admin(conn, username=name, password=password, generated=True)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert _me(c, login(c, name, password)).json()["must_change_password"] is True
        page = c.get("/signin")
        r = c.post(
            "/signin",
            data={"username": name, "password": password, "csrf": csrf_of(page.text)},
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"].startswith("/account/password")
        form = c.get(r.headers["location"])
        assert "generated when DSA was installed" in form.text
        r = c.post(
            "/account/password",
            data={
                "current_password": password,
                "new_password": "my-own-password",
                "csrf": csrf_of(form.text),
                "next": "/datasets",
            },
            follow_redirects=False,
        )
        assert r.status_code == 303 and r.headers["location"] == "/datasets"
        assert "Signed in as" in c.get("/datasets").text  # a fresh session, still signed in
    assert (
        _me(client, login(client, name, "my-own-password")).json()["must_change_password"] is False
    )


def test_users_page_is_for_admins(app: Any, client: Any, admin: dict[str, str]) -> None:
    from fastapi.testclient import TestClient

    from tests.ui.conftest import sign_in

    password = "password-" + uuid.uuid4().hex[:8]
    user = make_user(client, admin, password=password)
    name = user["X-Test-Username"]
    with TestClient(app, raise_server_exceptions=False) as c:
        csrf = sign_in(c)
        page = c.get("/admin/users")
        assert page.status_code == 200 and f'data-user="{name}"' in page.text
        r = c.post(
            f"/admin/users/{name}", data={"disabled": "true", "csrf": csrf}, follow_redirects=True
        )
        assert r.status_code == 200 and f"{name} is disabled" in r.text
        assert _me(client, user).status_code == 401
        c.post(f"/admin/users/{name}", data={"disabled": "false", "csrf": csrf})
    with TestClient(app, raise_server_exceptions=False) as c:
        sign_in(c, name, password)
        assert c.get("/admin/users").status_code == 403


def test_argon2_runs_a_bounded_number_of_hashes_at_once(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.auth import service

    with service._hash_slot():  # make sure the semaphore exists
        pass
    assert service._hashing is not None
    monkeypatch.setattr(service, "_HASH_WAIT_S", 0.2)
    taken = 0
    while service._hashing.acquire(blocking=False):
        taken += 1
    try:
        r = client.post("/api/v1/auth/login", json={"username": "admin", "password": "x" * 9})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["code"] == "too_many_requests"
    finally:
        for _ in range(taken):
            service._hashing.release()
    assert login(client, "admin", ADMIN_PASSWORD)

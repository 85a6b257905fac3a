"""The audit log (issue 15): entries written with the actions they record,
readable by the right people, and append-only for the application."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest

from tests.conftest import import_csv, login, make_dataset, make_user


def _entries(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/v1/audit", params={"per_page": 500, **params}, headers=headers)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_a_datasets_story_is_in_its_log(client: Any, admin: dict[str, str], worker: Any) -> None:
    owner = make_user(client, admin)
    reader = make_user(client, admin)
    ds = make_dataset(client, owner)
    d = f"/api/v1/datasets/{ds['id']}"
    client.patch(d, json={"description": "flights"}, headers=owner)
    client.put(f"{d}/permissions/{reader['X-Test-Username']}", json={"role": "read"}, headers=owner)
    job = import_csv(client, owner, ds["id"], b"id,x\n1,a\n2,b\n")
    assert job["state"] == "succeeded"
    client.post(f"{d}/branches", json={"name": "dev", "from": "main"}, headers=owner)
    client.delete(f"{d}/branches/dev", headers=owner)
    assert client.get(f"{d}/refs/main/export?format=csv", headers=reader).status_code == 200
    client.delete(f"{d}/permissions/{reader['X-Test-Username']}", headers=owner)

    got = _entries(client, owner, dataset=ds["id"])
    actions = [e["action"] for e in reversed(got)]
    for expected in (
        "dataset.create",
        "ref.create",
        "dataset.update",
        "permission.grant",
        "ref.move",
        "import",
        "ref.delete",
        "export",
        "permission.revoke",
    ):
        assert expected in actions, (expected, actions)
    assert actions.index("dataset.create") < actions.index("import") < actions.index("export")
    export = next(e for e in got if e["action"] == "export")
    assert export["actor"] == reader["X-Test-Username"] and export["outcome"] == "ok"
    assert export["details"]["format"] == "csv" and export["ip"]
    imported = next(e for e in got if e["action"] == "import")
    assert imported["actor"] == owner["X-Test-Username"] and imported["target"] == "main"
    # the same, by family and as NDJSON
    assert {e["action"] for e in _entries(client, owner, dataset=ds["id"], action="ref")} <= {
        "ref.create",
        "ref.move",
        "ref.delete",
    }
    r = client.get("/api/v1/audit/export", params={"dataset": ds["id"]}, headers=owner)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert [e["id"] for e in lines] == sorted(e["id"] for e in got)


def test_who_reads_the_log(client: Any, admin: dict[str, str]) -> None:
    owner = make_user(client, admin)
    writer = make_user(client, admin)
    ds = make_dataset(client, owner)
    d = f"/api/v1/datasets/{ds['id']}"
    client.put(
        f"{d}/permissions/{writer['X-Test-Username']}", json={"role": "write"}, headers=owner
    )
    assert (
        client.get("/api/v1/audit", params={"dataset": ds["id"]}, headers=owner).status_code == 200
    )
    r = client.get("/api/v1/audit", params={"dataset": ds["id"]}, headers=writer)
    assert r.status_code == 403
    r = client.get("/api/v1/audit", headers=owner)  # the whole log: administrators only
    assert r.status_code == 403 and r.json()["code"] == "admin_required"
    assert client.get("/api/v1/audit/export", headers=owner).status_code == 403
    stranger = make_user(client, admin)
    r = client.get("/api/v1/audit", params={"dataset": ds["id"]}, headers=stranger)
    assert r.status_code == 404
    assert (
        client.get("/api/v1/audit", params={"dataset": ds["name"]}, headers=owner).status_code
        == 200
    )
    assert client.get("/api/v1/audit").status_code == 401


def test_sign_ins_and_account_changes_are_logged(client: Any, admin: dict[str, str]) -> None:
    name = f"audited-{uuid.uuid4().hex[:6]}"
    r = client.post(
        "/api/v1/users", json={"username": name, "password": "first-password"}, headers=admin
    )
    assert r.status_code == 201
    bad = client.post("/api/v1/auth/login", json={"username": name, "password": "wrong-guess"})
    assert bad.status_code == 401
    user = login(client, name, "first-password")
    client.post(
        "/api/v1/users/me/password",
        json={"current_password": "first-password", "new_password": "second-password"},
        headers=user,
    )
    token = client.post(
        "/api/v1/tokens", json={"name": "ci"}, headers=login(client, name, "second-password")
    )
    assert token.status_code == 201
    client.patch(f"/api/v1/users/{name}", json={"disabled": True}, headers=admin)
    about = [e for e in _entries(client, admin) if e["target"] == name or e["actor"] == name]
    seen = {(e["action"], e["outcome"]) for e in about}
    for expected in (
        ("user.create", "ok"),
        ("auth.login_failed", "denied"),
        ("auth.login", "ok"),
        ("user.password_change", "ok"),
        ("token.create", "ok"),
        ("user.update", "ok"),
    ):
        assert expected in seen, (expected, seen)
    update = next(e for e in about if e["action"] == "user.update")
    assert update["actor"] == "admin" and update["details"] == {"disabled": True}


def test_the_log_is_append_only(client: Any, admin: dict[str, str]) -> None:
    """UPDATE, DELETE and TRUNCATE fail for the role the application uses."""
    import os

    make_dataset(client, admin)
    with psycopg.connect(os.environ["DSA_DATABASE_URL"], autocommit=True) as conn:
        n = conn.execute("SELECT count(*) FROM audit_log").fetchone()
        assert n and n[0] > 0
        for statement in (
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        after = conn.execute("SELECT count(*) FROM audit_log").fetchone()
        assert after and after[0] >= n[0]
        conn.execute(
            "INSERT INTO audit_log (action, outcome) VALUES ('export', 'ok')"
        )  # appending works


def test_the_application_role_may_only_read_and_append_to_the_log(
    stack: dict[str, str],
) -> None:
    """The API and worker connect as ``dsa_app`` (migration 0009): the
    database refuses it UPDATE, DELETE and TRUNCATE on the log by privilege,
    before any trigger runs, and it cannot drop the triggers either (it owns
    nothing). Before, the application ran as the tables' owner, held back by
    the triggers alone, which the owner may drop."""
    with psycopg.connect(stack["DSA_APP_DATABASE_URL"], autocommit=True) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("dsa_app",)
        for statement in (
            "UPDATE audit_log SET actor = 'someone else'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
            "DROP TRIGGER audit_log_no_change ON audit_log",
            "ALTER TABLE audit_log DISABLE TRIGGER ALL",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
                conn.execute(statement)
            assert "append-only" not in str(refused.value), statement  # a privilege, not a trigger
        conn.execute("INSERT INTO audit_log (action, outcome) VALUES ('export', 'ok')")
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone()[0] > 0  # type: ignore[index]
        conn.execute("UPDATE job SET state = state WHERE false")  # other tables: yes


def test_a_rolled_back_action_leaves_no_entry(client: Any, admin: dict[str, str]) -> None:
    owner = make_user(client, admin)
    ds = make_dataset(client, owner)
    d = f"/api/v1/datasets/{ds['id']}"
    r = client.put(
        f"{d}/permissions/{owner['X-Test-Username']}", json={"role": "read"}, headers=owner
    )
    assert r.status_code == 409  # the last admin: refused, rolled back
    assert not [
        e for e in _entries(client, owner, dataset=ds["id"]) if e["action"] == "permission.grant"
    ]


def test_the_activity_tab(app: Any, client: Any, admin: dict[str, str]) -> None:
    from fastapi.testclient import TestClient

    from tests.ui.conftest import sign_in

    ds = make_dataset(client, admin)
    with TestClient(app, raise_server_exceptions=False) as c:
        sign_in(c)
        page = c.get(f"/datasets/{ds['id']}/activity")
        assert page.status_code == 200
        assert 'data-action="dataset.create"' in page.text and "Download as NDJSON" in page.text

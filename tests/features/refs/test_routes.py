from __future__ import annotations

import uuid
from typing import Any

from core import db
from features.refs import service as refs_service
from tests.conftest import make_dataset, make_user
from tests.features.commits.factories import chain, commit


def _ds(client: Any, headers: dict[str, str]) -> tuple[dict[str, Any], str]:
    ds = make_dataset(client, headers)
    refs = client.get(f"/api/v1/datasets/{ds['id']}/refs", headers=headers).json()["items"]
    return ds, refs[0]["commit_id"]


def _problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = dict(r.json())
    assert body["status"] == status and body["code"] == code
    assert body["type"] == "https://dsa.dev/problems/" + code.replace("_", "-")
    assert body["title"] and body["detail"]
    return body


def test_move_by_compare_and_swap(client: Any, admin: dict[str, str]) -> None:
    ds, root = _ds(client, admin)
    with db.transaction() as conn:
        c1, c2 = chain(conn, ds["id"], root, 2)
    url = f"/api/v1/datasets/{ds['id']}/branches/main"
    # commit_id in any ref spelling: a prefix here
    r = client.patch(url, json={"commit_id": c2[:10], "expected_commit_id": root}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["commit_id"] == c2 and r.json()["name"] == "main"
    # stale expectation: 409 with where it expected and where it is
    r = client.patch(url, json={"commit_id": c1, "expected_commit_id": root}, headers=admin)
    body = _problem(r, 409, "ref_conflict")
    assert body["expected_commit_id"] == root and body["commit_id"] == c2
    # a reset: back to c1, by a tag's name, expected as a short prefix
    client.post(f"/api/v1/datasets/{ds['id']}/tags", json={"name": "v1", "from": c1}, headers=admin)
    r = client.patch(url, json={"commit_id": "v1", "expected_commit_id": c2[:7]}, headers=admin)
    assert r.status_code == 200 and r.json()["commit_id"] == c1
    assert client.get(url, headers=admin).json()["commit_id"] == c1
    # bad bodies and unknown things
    _problem(client.patch(url, json={}, headers=admin), 422, "invalid_request")
    _problem(client.patch(url, json={"commit_id": c2}, headers=admin), 422, "invalid_request")
    r = client.patch(url, json={"commit_id": c2, "expected_commit_id": "main"}, headers=admin)
    _problem(r, 422, "invalid_request")
    r = client.patch(url, json={"commit_id": "nope", "expected_commit_id": c1}, headers=admin)
    _problem(r, 404, "ref_not_found")
    r = client.patch(
        f"/api/v1/datasets/{ds['id']}/branches/nope",
        json={"commit_id": c2, "expected_commit_id": c1},
        headers=admin,
    )
    _problem(r, 404, "branch_not_found")
    r = client.patch(
        f"/api/v1/datasets/{ds['id']}/branches/v1",
        json={"commit_id": c2, "expected_commit_id": c1},
        headers=admin,
    )
    _problem(r, 404, "branch_not_found")  # tags never move
    # an expected commit that does not exist: the branch is not there
    r = client.patch(url, json={"commit_id": c2, "expected_commit_id": "0" * 64}, headers=admin)
    _problem(r, 409, "ref_conflict")


def test_roles_for_moving_and_protecting(client: Any, admin: dict[str, str]) -> None:
    owner = make_user(client, admin)
    writer = make_user(client, admin)
    reader = make_user(client, admin)
    ds, root = _ds(client, owner)
    for who, role in ((writer, "write"), (reader, "read")):
        client.put(
            f"/api/v1/datasets/{ds['id']}/permissions/{who['X-Test-Username']}",
            json={"role": role},
            headers=owner,
        )
    with db.transaction() as conn:
        (c1,) = chain(conn, ds["id"], root, 1)
    url = f"/api/v1/datasets/{ds['id']}/branches/main"
    move = {"commit_id": c1, "expected_commit_id": root}
    _problem(client.patch(url, json=move, headers=reader), 403, "role_required")
    _problem(client.patch(url, json={"protected": True}, headers=writer), 403, "role_required")
    _problem(client.patch(url, json={"protected": True}), 401, "unauthorized")
    assert client.patch(url, json=move, headers=writer).json()["commit_id"] == c1
    r = client.patch(url, json={"protected": True, "reason": "release line"}, headers=owner)
    assert r.status_code == 200 and r.json()["protected"] is True
    refs = client.get(f"/api/v1/datasets/{ds['id']}/refs", headers=reader).json()["items"]
    assert refs[0]["protected"] is True


def test_protected_branches_only_move_forward(client: Any, admin: dict[str, str]) -> None:
    ds, root = _ds(client, admin)
    with db.transaction() as conn:
        (c1,) = chain(conn, ds["id"], root, 1)
        side = commit(conn, ds["id"], root)
        merge = commit(conn, ds["id"], c1, side)
    base = f"/api/v1/datasets/{ds['id']}"
    client.post(f"{base}/branches", json={"name": "rel", "from": c1}, headers=admin)
    url = f"{base}/branches/rel"
    assert client.patch(url, json={"protected": True}, headers=admin).status_code == 200
    # back, or sideways: refused
    for target in (root, side):
        r = client.patch(url, json={"commit_id": target, "expected_commit_id": c1}, headers=admin)
        _problem(r, 409, "branch_protected")
    _problem(client.delete(url, headers=admin), 409, "branch_protected")
    # forward (the merge descends from c1): allowed
    r = client.patch(url, json={"commit_id": merge, "expected_commit_id": c1}, headers=admin)
    assert r.status_code == 200 and r.json()["commit_id"] == merge
    # unprotect and reset in one request: protection applies first
    r = client.patch(
        url,
        json={"protected": False, "commit_id": root, "expected_commit_id": merge},
        headers=admin,
    )
    assert r.status_code == 200
    assert r.json()["protected"] is False and r.json()["commit_id"] == root


def test_delete_branches_and_tags(client: Any, admin: dict[str, str]) -> None:
    ds, root = _ds(client, admin)
    base = f"/api/v1/datasets/{ds['id']}"
    _problem(client.delete(f"{base}/branches/main", headers=admin), 409, "default_branch")
    client.post(f"{base}/branches", json={"name": "team/dev", "from": "main"}, headers=admin)
    r = client.delete(f"{base}/branches/team/dev?expected_commit_id={'a' * 64}", headers=admin)
    _problem(r, 409, "ref_conflict")
    r = client.delete(f"{base}/branches/team/dev?expected_commit_id={root[:8]}", headers=admin)
    assert r.status_code == 204 and r.content == b""
    _problem(client.get(f"{base}/branches/team/dev", headers=admin), 404, "branch_not_found")
    _problem(client.delete(f"{base}/branches/team/dev", headers=admin), 404, "branch_not_found")
    # tags: message, tagger and time are shown; deleting one is 204
    r = client.post(
        f"{base}/tags", json={"name": "v1.0", "from": "main", "message": "first"}, headers=admin
    )
    assert r.status_code == 201
    tag = client.get(f"{base}/tags/v1.0", headers=admin).json()
    assert tag["kind"] == "tag" and tag["message"] == "first" and tag["created_by"] == "admin"
    assert tag["commit_id"] == root and tag["created_at"]
    listed = client.get(f"{base}/refs", headers=admin).json()["items"]
    assert [(x["name"], x["message"], x["created_by"]) for x in listed] == [
        ("main", None, "admin"),
        ("v1.0", "first", "admin"),
    ]
    _problem(client.delete(f"{base}/tags/main", headers=admin), 404, "tag_not_found")
    _problem(client.delete(f"{base}/branches/v1.0", headers=admin), 404, "branch_not_found")
    assert client.delete(f"{base}/tags/v1.0", headers=admin).status_code == 204
    _problem(client.get(f"{base}/tags/v1.0", headers=admin), 404, "tag_not_found")
    # a deleted name can be used again
    r = client.post(f"{base}/tags", json={"name": "v1.0", "from": "main"}, headers=admin)
    assert r.status_code == 201
    other = make_user(client, admin)
    _problem(client.delete(f"{base}/tags/v1.0", headers=other), 404, "dataset_not_found")


def test_reflog_records_who_what_when_why(client: Any, admin: dict[str, str]) -> None:
    user = make_user(client, admin)
    ds, root = _ds(client, user)
    with db.transaction() as conn:
        (c1,) = chain(conn, ds["id"], root, 1)
    base = f"/api/v1/datasets/{ds['id']}"
    name = user["X-Test-Username"]
    client.post(
        f"{base}/branches", json={"name": "a/b", "from": "main", "reason": "try it"}, headers=user
    )
    client.patch(
        f"{base}/branches/a/b",
        json={"commit_id": c1, "expected_commit_id": root, "reason": "catch up"},
        headers=user,
    )
    client.patch(f"{base}/branches/a/b", json={"protected": True}, headers=user)
    client.patch(f"{base}/branches/a/b", json={"protected": True}, headers=user)  # no change
    client.patch(f"{base}/branches/a/b", json={"protected": False}, headers=user)
    with db.transaction() as conn:  # as imports do: by and reason default
        refs_service.cas_move(
            conn, dataset_id=uuid.UUID(ds["id"]), name="a/b", new=root, expected=c1
        )
    assert client.delete(f"{base}/branches/a/b?reason=done", headers=user).status_code == 204

    log = client.get(f"{base}/refs/a/b/log", headers=user).json()
    assert log["total"] == 6 and log["page"] == 1 and log["links"]["next"] is None
    got = [
        (e["action"], e["old_commit_id"], e["new_commit_id"], e["by"], e["reason"])
        for e in log["items"]
    ]
    assert got == [
        ("delete", root, None, name, "done"),
        ("move", c1, root, "system", ""),
        ("unprotect", c1, c1, name, ""),
        ("protect", c1, c1, name, ""),
        ("move", root, c1, name, "catch up"),
        ("create", None, root, name, "try it"),
    ]
    assert all(e["ref"] == "a/b" and e["kind"] == "branch" for e in log["items"])
    stamps = [e["created_at"] for e in log["items"]]
    assert stamps == sorted(stamps, reverse=True)
    # paginated, newest first
    p1 = client.get(f"{base}/refs/a/b/log?per_page=4", headers=user).json()
    assert len(p1["items"]) == 4 and p1["links"]["next"]
    p2 = client.get(p1["links"]["next"], headers=user).json()
    assert [e["id"] for e in p1["items"] + p2["items"]] == [e["id"] for e in log["items"]]
    # the default branch's log starts with the dataset
    main = client.get(f"{base}/refs/main/log", headers=user).json()["items"]
    assert [(e["action"], e["new_commit_id"], e["by"]) for e in main] == [("create", root, name)]
    _problem(client.get(f"{base}/refs/never/log", headers=user), 404, "ref_not_found")
    _problem(client.get(f"{base}/refs/main/log?per_page=501", headers=user), 422, "invalid_request")
    _problem(client.get(f"{base}/refs/main/log"), 404, "dataset_not_found")


def test_a_protected_branch_is_its_admins_alone(
    client: Any, admin: dict[str, str], worker: Any
) -> None:
    """Decision 0029: on a protected branch, imports, merges, reverts and
    resets need the admin role; tags are removed by admins only. A writer
    could do all of it before (only resets were held to moving forward)."""
    from tests.conftest import import_csv, make_dataset, make_user, upload

    owner = make_user(client, admin)
    writer = make_user(client, admin)
    ds = make_dataset(client, owner)
    d = f"/api/v1/datasets/{ds['id']}"
    client.put(
        f"{d}/permissions/{writer['X-Test-Username']}", json={"role": "write"}, headers=owner
    )
    first = import_csv(client, owner, ds["id"], b"id,v\n1,a\n")
    assert first["state"] == "succeeded"
    r = client.post(f"{d}/branches", json={"name": "dev", "from": "main"}, headers=writer)
    assert r.status_code == 201
    r = client.patch(f"{d}/branches/main", json={"protected": True}, headers=writer)
    assert r.status_code == 403  # protecting is the admins' too
    assert (
        client.patch(f"{d}/branches/main", json={"protected": True}, headers=owner).status_code
        == 200
    )

    r = upload(client, writer, ds["id"], b"id,v\n1,b\n")
    assert r.status_code == 403 and "protected" in r.json()["detail"]
    assert upload(client, writer, ds["id"], b"id,v\n1,b\n", branch="dev").status_code == 202
    r = client.post(f"{d}/merges", json={"source": "dev", "target": "main"}, headers=writer)
    assert r.status_code == 403
    r = client.post(f"{d}/reverts", json={"branch": "main", "commit": "main"}, headers=writer)
    assert r.status_code == 403
    r = client.patch(
        f"{d}/branches/main",
        json={"commit_id": "main~1", "expected_commit_id": first["commit_id"]},
        headers=writer,
    )
    assert r.status_code == 403
    assert (
        client.post(f"{d}/tags", json={"name": "v1", "from": "main"}, headers=writer).status_code
        == 201
    )
    assert client.delete(f"{d}/tags/v1", headers=writer).status_code == 403
    assert client.delete(f"{d}/tags/v1", headers=owner).status_code == 204
    # the admins still land on it
    assert import_csv(client, owner, ds["id"], b"id,v\n1,c\n")["state"] == "succeeded"

"""Datasets by name in every path, and revision suffixes on refs (issue 16,
"Server-side support"): ``main~N``, ``main^N``, ``main@{N}``, ``main@{time}``,
with 400 problems naming the bad part."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import Worker, import_csv, make_dataset, make_user


@pytest.fixture(scope="module")
def history(client: Any, admin: dict[str, str], worker: Worker) -> dict[str, Any]:
    ds = make_dataset(client, admin, name=f"rev-{uuid.uuid4().hex[:8]}")
    commits, times = [], []
    for i in range(3):
        job = import_csv(client, admin, ds["id"], f"id,v\n1,{i}\n".encode())
        commits.append(job["commit_id"])
        times.append(datetime.now(UTC))
        time.sleep(0.05)
    r = client.post(
        f"/api/v1/datasets/{ds['id']}/branches",
        json={"name": "side", "from": commits[0]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return {"ds": ds, "commits": commits, "times": times}


def _commit(client: Any, admin: dict[str, str], ds: str, ref: str) -> Any:
    return client.get(f"/api/v1/datasets/{ds}/refs/{ref}/tables", headers=admin)


def test_suffixes_walk_history_and_the_reflog(
    client: Any, admin: dict[str, str], history: dict[str, Any]
) -> None:
    ds, c = history["ds"]["name"], history["commits"]
    want = {
        "main": c[2],
        "main~": c[1],
        "main~1": c[1],
        "main~2": c[0],
        "main^": c[1],
        "main^0": c[2],
        "main^1^1": c[0],
        "main~1^": c[0],
        f"{c[2][:10]}~2": c[0],
        "main@{0}": c[2],
        "main@{1}": c[1],
        "main@{2}": c[0],
        "main@{1}~1": c[0],
        "main@{" + history["times"][1].isoformat() + "}": c[1],
        "main@{0 seconds ago}": c[2],
        "main@{1.week.ago}~0": None,  # before the branch existed
    }
    for ref, commit in want.items():
        r = _commit(
            client, admin, ds, ref.replace("^", "%5E").replace("{", "%7B").replace("}", "%7D")
        )
        if commit is None:
            assert r.status_code == 404 and r.json()["code"] == "revision_not_found", (ref, r.text)
            assert "1.week.ago" in r.json()["detail"]
        else:
            assert r.status_code == 200, (ref, r.text)
            assert r.json()["commit_id"] == commit, ref
    # a compare and a page take them too
    r = client.get(f"/api/v1/datasets/{ds}/compare/main~2...main", headers=admin)
    assert r.status_code == 200 and r.json()["summary"]["modified"] == 1, r.text
    r = client.get(f"/api/v1/datasets/{ds}/refs/main~1/data", headers=admin)
    assert r.json()["rows"] == [[1, 1]]


@pytest.mark.parametrize(
    ("ref", "code", "part"),
    [
        ("main~x", "invalid_revision", "x"),
        ("main~1~", None, None),  # fine: ~ alone is ~1
        ("main@{soon}", "invalid_revision", "@{soon}"),
        ("main~1@{1}", "invalid_revision", "@{1}"),
        ("main~9", "revision_not_found", "~9"),
        ("main^2", "revision_not_found", "^2"),
        ("main@{7}", "revision_not_found", "@{7}"),
        ("~1", "invalid_revision", "~1"),
        ("nope~1", "ref_not_found", None),
    ],
)
def test_bad_suffixes_are_problems_naming_the_part(
    client: Any,
    admin: dict[str, str],
    history: dict[str, Any],
    ref: str,
    code: str | None,
    part: str | None,
) -> None:
    r = _commit(
        client,
        admin,
        history["ds"]["id"],
        ref.replace("^", "%5E").replace("{", "%7B").replace("}", "%7D"),
    )
    if code is None:
        assert r.status_code in (200, 404), r.text
        return
    body = r.json()
    assert body["code"] == code, r.text
    assert r.status_code == (400 if code == "invalid_revision" else 404)
    if part is not None:
        assert body.get("part") == part and part in body["detail"], body


def test_a_dataset_is_named_by_its_name_in_every_path(
    client: Any, admin: dict[str, str], history: dict[str, Any]
) -> None:
    ds = history["ds"]
    by_name = client.get(f"/api/v1/datasets/{ds['name']}", headers=admin)
    assert by_name.status_code == 200 and by_name.json()["id"] == ds["id"]
    for path in ("refs", "commits?ref=main", "refs/main/data", "refs/side/tables"):
        a = client.get(f"/api/v1/datasets/{ds['name']}/{path}", headers=admin)
        b = client.get(f"/api/v1/datasets/{ds['id']}/{path}", headers=admin)
        assert a.status_code == 200 and a.json() == b.json(), path
    client.patch(f"/api/v1/datasets/{ds['name']}", json={"visibility": "public"}, headers=admin)
    page = client.get(f"/datasets/{ds['name']}")  # the web UI's pages too
    assert page.status_code == 200 and ds["name"] in page.text
    # its ref box takes the same spellings: main~2 is the first version
    page = client.get(f"/datasets/{ds['name']}", params={"ref": "main~2"})
    assert page.status_code == 200 and history["commits"][0][:12] in page.text
    client.patch(f"/api/v1/datasets/{ds['name']}", json={"visibility": "private"}, headers=admin)
    r = client.get("/api/v1/datasets/no-such-dataset-here/refs", headers=admin)
    assert r.status_code == 404 and r.json()["code"] == "dataset_not_found"
    assert "no-such-dataset-here" in r.json()["detail"]


def test_a_hidden_dataset_by_name_is_the_same_404_as_an_unknown_one(
    client: Any, admin: dict[str, str], history: dict[str, Any]
) -> None:
    """Its id never shows: that would tell the name is taken."""
    outsider = make_user(client, admin)
    ds = history["ds"]
    hidden = client.get(f"/api/v1/datasets/{ds['name']}/refs", headers=outsider)
    unknown = client.get("/api/v1/datasets/no-such-dataset-here/refs", headers=outsider)
    assert hidden.status_code == unknown.status_code == 404
    assert ds["id"] not in hidden.text
    assert hidden.json()["detail"].replace(ds["name"], "X") == unknown.json()["detail"].replace(
        "no-such-dataset-here", "X"
    )


def test_a_name_may_not_look_like_an_id(client: Any, admin: dict[str, str]) -> None:
    r = client.post("/api/v1/datasets", json={"name": str(uuid.uuid4())}, headers=admin)
    assert r.status_code == 422 and "UUID" in r.text


def test_a_name_freed_and_taken_again_names_the_new_dataset_at_once(
    client: Any, admin: dict[str, str]
) -> None:
    name = f"again-{uuid.uuid4().hex[:8]}"
    old = make_dataset(client, admin, name=name)
    assert client.get(f"/api/v1/datasets/{name}", headers=admin).json()["id"] == old["id"]
    assert client.delete(f"/api/v1/datasets/{name}", headers=admin).status_code == 204
    new = make_dataset(client, admin, name=name)
    got = client.get(f"/api/v1/datasets/{name}", headers=admin)
    assert got.status_code == 200 and got.json()["id"] == new["id"] != old["id"]

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


def _history(client: Any, headers: dict[str, str], url: str, **params: Any) -> list[str]:
    ids: list[str] = []
    page = client.get(url, params=params, headers=headers).json()
    while True:
        ids += [c["id"] for c in page["items"]]
        if not page["links"]["next"]:
            return ids
        page = client.get(page["links"]["next"], headers=headers).json()


def test_history_first_parent_and_all(client: Any, admin: dict[str, str]) -> None:
    """main: root - a1 - a2 - m1 - a3 - m2, where m1 merges side (s1, s2 from a1)
    and m2 merges fix (f1 from root)."""
    ds, root = _ds(client, admin)
    with db.transaction() as conn:
        a1, a2 = chain(conn, ds["id"], root, 2)
        s1, s2 = chain(conn, ds["id"], a1, 2)
        m1 = commit(conn, ds["id"], a2, s2, message="merge side")
        (a3,) = chain(conn, ds["id"], m1, 1)
        (f1,) = chain(conn, ds["id"], root, 1)
        m2 = commit(conn, ds["id"], a3, f1, message="merge fix")
        refs_service.cas_move(
            conn, dataset_id=uuid.UUID(ds["id"]), name="main", new=m2, expected=root
        )
    url = f"/api/v1/datasets/{ds['id']}/commits"
    r = client.get(url, params={"per_page": 2}, headers=admin).json()
    assert r["total"] == 6 and r["head"] == m2 and r["links"]["next"]
    assert _history(client, admin, url, per_page=2) == [m2, a3, m1, a2, a1, root]

    r = client.get(url, params={"all": "true", "per_page": 3}, headers=admin).json()
    assert r["total"] == 9 and len(r["items"]) == 3
    assert r["items"][0]["parents"] == [a3, f1] and r["items"][0]["message"] == "merge fix"
    got = _history(client, admin, url, all="true", per_page=3)
    # generations: root 1, a1/f1 2, a2/s1 3, s2 4, m1 5, a3 6, m2 7; ties newest first
    assert got == [m2, a3, m1, s2, s1, a2, f1, a1, root]
    # from another ref, any spelling
    got = _history(client, admin, url, ref=m1[:9], all="true")
    assert got == [m1, s2, s1, a2, a1, root]
    r = client.get(url, params={"all": "true", "page": 9, "per_page": 5}, headers=admin).json()
    assert r["items"] == [] and r["total"] == 9 and r["links"]["next"] is None


def test_merge_base(client: Any, admin: dict[str, str]) -> None:
    ds, root = _ds(client, admin)
    did = uuid.UUID(ds["id"])
    with db.transaction() as conn:
        a1, a2, a3 = chain(conn, did, root, 3)
        (b1,) = chain(conn, did, a1, 1)
        # criss-cross: x and y each merge both x0 and y0
        x0 = commit(conn, did, a3)
        y0 = commit(conn, did, a3)
        x = commit(conn, did, x0, y0)
        y = commit(conn, did, y0, x0)
        lone = commit(conn, did)  # a second root: no shared history
        for name, at in (("dev", b1), ("team/x", x), ("y", y), ("lone", lone)):
            refs_service.create_branch_at(conn, dataset_id=did, name=name, commit_id=at, by="t")
        refs_service.cas_move(conn, dataset_id=did, name="main", new=a3, expected=root)
    url = f"/api/v1/datasets/{ds['id']}/merge-base"

    def mb(spec: str) -> dict[str, Any]:
        r = client.get(f"{url}/{spec}", headers=admin)
        assert r.status_code == 200, r.text
        return dict(r.json())

    assert mb("main...dev") == {"merge_base": a1, "a": a3, "b": b1}
    assert mb(f"{a2[:8]}...main") == {"merge_base": a2, "a": a2, "b": a3}  # linear
    assert mb("main...main")["merge_base"] == a3
    first = mb("team/x...y")["merge_base"]
    assert first in (x0, y0)
    assert mb("y...team/x")["merge_base"] == first and mb("team/x...y")["merge_base"] == first
    assert mb("main...lone") == {"merge_base": None, "a": a3, "b": lone}

    def problem(spec: str, status: int, code: str) -> None:
        r = client.get(f"{url}/{spec}", headers=admin)
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == code and r.json()["status"] == status

    problem("main..dev", 400, "invalid_range")
    problem("main...", 400, "invalid_range")
    # a spec no two refs could spell is refused before any lookup: a run of
    # dots made a query per split (two refs per split; issue 15), a 400 now
    problem("main" + "." * 4000 + "dev", 400, "invalid_range")
    problem("main....." + "x" * 600, 400, "invalid_range")
    problem("main...nope", 404, "ref_not_found")
    problem(f"main...{'0' * 64}", 404, "ref_not_found")
    other = make_user(client, admin)
    r = client.get(f"{url}/main...dev", headers=other)
    assert r.status_code == 404 and r.json()["code"] == "dataset_not_found"
    r = client.get(f"/api/v1/datasets/{uuid.uuid4()}/commits", params={"all": "true"})
    assert r.status_code == 404 and r.json()["code"] == "dataset_not_found"
    r = client.get(f"/api/v1/datasets/{ds['id']}/commits", params={"all": "x"}, headers=admin)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query.all"

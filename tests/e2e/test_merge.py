"""Merges and reverts over HTTP, on versions imported by the real worker."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import import_csv, make_dataset

HEADER = "id,name,qty"
BASE = [(i, f"item{i}", i * 10) for i in range(1, 101)]


def _csv(rows: list[tuple[Any, ...]]) -> bytes:
    return (HEADER + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)).encode()


def _rows(http: httpx.Client, auth: dict[str, str], ds: str, ref: str) -> list[tuple[Any, ...]]:
    page = http.get(
        f"/api/v1/datasets/{ds}/refs/{ref}/data", params={"limit": 1000}, headers=auth
    ).json()
    return [tuple(r) for r in page["rows"]]


def _setup(
    http: httpx.Client, auth: dict[str, str], ours: list[Any], theirs: list[Any], **ds: Any
) -> str:
    d = make_dataset(http, auth, **ds)
    assert import_csv(http, auth, d["id"], _csv(BASE))["state"] == "succeeded"
    r = http.post(
        f"/api/v1/datasets/{d['id']}/branches",
        json={"name": "feature", "from": "main"},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    job = import_csv(http, auth, d["id"], _csv(theirs), branch="feature")
    assert job["state"] == "succeeded", job
    job = import_csv(http, auth, d["id"], _csv(ours))
    assert job["state"] == "succeeded", job
    return str(d["id"])


def _merge(http: httpx.Client, auth: dict[str, str], ds: str, **body: Any) -> httpx.Response:
    return http.post(
        f"/api/v1/datasets/{ds}/merges",
        json={"source": "feature", "target": "main", **body},
        headers=auth,
    )


def test_fast_forward_and_up_to_date(http: httpx.Client, auth: dict[str, str]) -> None:
    d = make_dataset(http, auth)
    import_csv(http, auth, d["id"], _csv(BASE))
    http.post(
        f"/api/v1/datasets/{d['id']}/branches",
        json={"name": "feature", "from": "main"},
        headers=auth,
    )
    job = import_csv(http, auth, d["id"], _csv(BASE[:50]), branch="feature")
    r = _merge(http, auth, d["id"])
    assert r.status_code == 200, r.text
    assert r.json()["fast_forward"] is True and r.json()["commit_id"] == job["commit_id"]
    again = _merge(http, auth, d["id"]).json()
    assert again["up_to_date"] is True and again["commit_id"] == job["commit_id"]


def test_three_way_merge_takes_both_sides(http: httpx.Client, auth: dict[str, str]) -> None:
    ours = list(BASE)
    ours[9] = (10, "item10", -1)  # ours edits a cell
    theirs = list(BASE)
    theirs[49] = (50, "fifty", 500)  # theirs edits row 50
    del theirs[79]  # theirs removes row 80
    theirs.insert(20, (1000, "new", 1))  # theirs adds after row 20
    ds = _setup(http, auth, ours, theirs)
    r = _merge(http, auth, ds, message="bring feature in")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["fast_forward"] is False
    want = list(BASE)
    want[9] = (10, "item10", -1)
    want[49] = (50, "fifty", 500)
    del want[79]
    want.insert(20, (1000, "new", 1))
    assert _rows(http, auth, ds, "main") == want
    detail = http.get(f"/api/v1/datasets/{ds}/commits/{out['commit_id']}", headers=auth).json()
    assert len(detail["parents"]) == 2
    assert detail["provenance"]["merge"]["strategy"] == "fail"
    assert detail["message"] == "bring feature in"


def test_cells_merge_and_conflicts(http: httpx.Client, auth: dict[str, str]) -> None:
    ours = list(BASE)
    ours[4] = (5, "ours-name", 50)  # same row, different cells: merges
    ours[6] = (7, "item7", 777)  # same cell changed differently: conflict
    theirs = list(BASE)
    theirs[4] = (5, "item5", 55)
    theirs[6] = (7, "item7", 700)
    ds = _setup(http, auth, ours, theirs)
    r = _merge(http, auth, ds)
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["code"] == "merge_conflict" and problem["conflict_count"] == 1
    (c,) = problem["conflicts"]
    assert c["kind"] == "modify/modify" and c["base_position"] == 6
    assert c["cells"] == {"qty": {"base": 70, "ours": 777, "theirs": 700}}
    main_before = _rows(http, auth, ds, "main")
    assert main_before == [tuple(r) for r in ours]  # nothing moved
    r = _merge(http, auth, ds, strategy="theirs")
    assert r.status_code == 200, r.text
    got = _rows(http, auth, ds, "main")
    assert got[4] == (5, "ours-name", 55) and got[6] == (7, "item7", 700)


def test_modify_delete_conflict(http: httpx.Client, auth: dict[str, str]) -> None:
    ours = [r for r in BASE if r[0] != 30]
    theirs = list(BASE)
    theirs[29] = (30, "item30", 3)
    ds = _setup(http, auth, ours, theirs)
    r = _merge(http, auth, ds)
    assert r.status_code == 409
    assert [c["kind"] for c in r.json()["conflicts"]] == ["delete/modify"]
    r = _merge(http, auth, ds, strategy="ours")
    assert r.status_code == 200
    assert (30, "item30", 3) not in _rows(http, auth, ds, "main")


def test_keyed_add_add(http: httpx.Client, auth: dict[str, str]) -> None:
    ours = [*BASE, (500, "same", 1), (501, "ours", 1)]
    theirs = [*BASE, (500, "same", 1), (501, "theirs", 2)]
    ds = _setup(http, auth, ours, theirs, primary_key=["id"])
    r = _merge(http, auth, ds)
    assert r.status_code == 409
    (c,) = r.json()["conflicts"]
    assert c["kind"] == "add/add"
    assert _merge(http, auth, ds, strategy="ours").status_code == 200
    got = _rows(http, auth, ds, "main")
    assert got.count((500, "same", 1)) == 1 and (501, "ours", 1) in got
    assert (501, "theirs", 2) not in got


def test_revert(http: httpx.Client, auth: dict[str, str]) -> None:
    d = make_dataset(http, auth)
    ds = d["id"]
    import_csv(http, auth, ds, _csv(BASE))
    edited = list(BASE)
    edited[2] = (3, "oops", 0)
    bad = import_csv(http, auth, ds, _csv(edited))["commit_id"]
    later = list(edited)
    later.append((101, "later", 1))
    import_csv(http, auth, ds, _csv(later))
    r = http.post(
        f"/api/v1/datasets/{ds}/reverts", json={"branch": "main", "commit": bad}, headers=auth
    )
    assert r.status_code == 201, r.text
    assert _rows(http, auth, ds, "main") == [*BASE, (101, "later", 1)]
    detail = http.get(f"/api/v1/datasets/{ds}/commits/main", headers=auth).json()
    assert detail["provenance"]["revert"]["commit_id"] == bad
    assert len(detail["parents"]) == 1


def test_merge_problems(http: httpx.Client, auth: dict[str, str]) -> None:
    d = make_dataset(http, auth)
    r = http.post(
        f"/api/v1/datasets/{d['id']}/merges",
        json={"source": "nope", "target": "main"},
        headers=auth,
    )
    assert r.status_code == 404
    r = http.post(
        f"/api/v1/datasets/{d['id']}/merges",
        json={"source": "main", "target": "main", "strategy": "maybe"},
        headers=auth,
    )
    assert r.status_code == 422

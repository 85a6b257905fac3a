"""Quality gates (issue 17): rules per dataset, a weighted score per commit,
and gated branches that refuse imports, merges and reverts scoring below
the threshold (the branch stays; other branches take the commit)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Worker, import_csv, make_dataset, make_user

GOOD = b"id,email,qty,status,day\n" + b"".join(
    f"{i},u{i}@example.com,{i % 50},{['new', 'paid'][i % 2]},2024-01-{1 + i % 28:02d}\n".encode()
    for i in range(1, 201)
)
# id 7 twice, a missing email, a bad one, qty out of range, an unknown status
BAD = GOOD + b"7,dup@example.com,3,paid,2024-01-02\n,,500,lost,2024-02-30\n"
BAD = BAD.replace(b"\n,,500,lost,2024-02-30\n", b"\n201,,500,lost,2024-02-03\n")
BAD = BAD.replace(b"u9@example.com", b"not-an-email")

RULES = [
    {"name": "ids", "table": "t", "column": "id", "check": "unique", "weight": 3},
    {"name": "id present", "table": "t", "column": "id", "check": "not_null"},
    {"name": "email present", "table": "t", "column": "email", "check": "not_null"},
    {"name": "email form", "table": "t", "column": "email", "check": "regex",
     "args": {"pattern": r"[^@\s]+@[^@\s]+\.[a-z]+"}},
    {"name": "qty floor", "table": "t", "column": "qty", "check": "min", "args": {"value": 0}},
    {"name": "qty cap", "table": "t", "column": "qty", "check": "max", "args": {"value": 100}},
    {"name": "qty range", "table": "t", "column": "qty", "check": "between",
     "args": {"min": 0, "max": 100}},
    {"name": "statuses", "table": "t", "column": "status", "check": "in",
     "args": {"values": ["new", "paid"]}},
    {"name": "days", "table": "t", "column": "day", "check": "min",
     "args": {"value": "2024-01-01"}},
    {"name": "enough rows", "table": "t", "check": "row_count_min", "args": {"min": 100}},
    {"name": "steady", "table": "t", "check": "row_count_change_max_pct",
     "args": {"max_pct": 50}},
    {"name": "shape", "table": "t", "check": "schema",
     "args": {"columns": [{"name": "id", "type": "integer"}, {"name": "qty", "type": "integer"}]}},
]  # fmt: skip


@pytest.fixture(scope="module")
def gated(client: Any, admin: dict[str, str], worker: Worker) -> dict[str, Any]:
    owner = make_user(client, admin)
    ds = make_dataset(client, owner, name=f"quality-{uuid.uuid4().hex[:8]}")
    first = import_csv(client, owner, ds["id"], GOOD, filename="t.csv")
    assert first["state"] == "succeeded", first
    r = client.put(f"/api/v1/datasets/{ds['id']}/quality", headers=owner,
                   json={"rules": RULES, "threshold": 100, "gate_branches": ["main"]})  # fmt: skip
    assert r.status_code == 200, r.text
    return {"ds": ds, "owner": owner, "first": first["commit_id"]}


def _report(client: Any, h: dict[str, str], ds: str, ref: str) -> dict[str, Any]:
    r = client.get(f"/api/v1/datasets/{ds}/refs/{ref}/quality", headers=h)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_clean_version_passes_every_rule(client: Any, gated: dict[str, Any]) -> None:
    body = _report(client, gated["owner"], gated["ds"]["id"], "main")
    assert body["commit_id"] == gated["first"] and body["gated"] is True
    assert body["score"] == 100 and body["passed"] is True
    assert [r["name"] for r in body["results"]] == [r["name"] for r in RULES]
    assert all(r["passed"] and r["failing_rows"] == 0 for r in body["results"])


def test_an_import_below_the_threshold_fails_and_the_branch_stays(
    client: Any, gated: dict[str, Any]
) -> None:
    ds, owner = gated["ds"]["id"], gated["owner"]
    job = import_csv(client, owner, ds, BAD, filename="t.csv")
    assert job["state"] == "failed"
    problem = job["error"]
    assert problem["code"] == "quality_gate_failed" and problem["status"] == 409
    failing = {f["name"]: f for f in problem["failing"]}
    assert set(failing) == {
        "ids",
        "email present",
        "email form",
        "qty cap",
        "qty range",
        "statuses",
    }
    assert failing["ids"]["failing_rows"] == 2
    assert failing["ids"]["sample"] == [{"value": 7, "count": 2}]
    assert failing["qty cap"]["failing_rows"] == 1
    assert failing["qty cap"]["sample"] == [{"row": 201, "value": 500}]
    assert failing["statuses"]["sample"] == [{"row": 201, "value": "lost"}]
    assert failing["email form"]["failing_rows"] == 1  # the empty one is null: not_null's
    assert problem["score"] < 100 and problem["branch"] == "main"
    refs = client.get(f"/api/v1/datasets/{ds}/refs", headers=owner).json()["items"]
    assert next(r for r in refs if r["name"] == "main")["commit_id"] == gated["first"]


def test_other_branches_take_it_and_a_fixed_branch_merges(
    client: Any, gated: dict[str, Any]
) -> None:
    ds, owner = gated["ds"]["id"], gated["owner"]
    r = client.post(f"/api/v1/datasets/{ds}/branches", headers=owner,
                    json={"name": "fix", "from": "main"})  # fmt: skip
    assert r.status_code == 201, r.text
    job = import_csv(client, owner, ds, BAD, filename="t.csv", branch="fix")
    assert job["state"] == "succeeded", job
    body = _report(client, owner, ds, "fix")
    assert body["gated"] is False and body["passed"] is False
    weights = sum(r.get("weight", 1) for r in RULES)
    assert body["score"] == round(100 * (weights - 3 - 5) / weights, 2)  # ids weigh 3
    refused = client.post(f"/api/v1/datasets/{ds}/merges", headers=owner,
                          json={"source": "fix", "target": "main"})  # fmt: skip
    assert refused.status_code == 409 and refused.json()["code"] == "quality_gate_failed"
    # fixed on the branch: now the (fast-forward) merge is taken
    fixed = import_csv(client, owner, ds, GOOD + b"201,z@example.com,5,new,2024-01-05\n",
                       filename="t.csv", branch="fix")  # fmt: skip
    assert fixed["state"] == "succeeded", fixed
    merged = client.post(f"/api/v1/datasets/{ds}/merges", headers=owner,
                         json={"source": "fix", "target": "main"})  # fmt: skip
    assert merged.status_code == 200, merged.text
    assert _report(client, owner, ds, "main")["score"] == 100


def test_a_breaking_schema_change_and_a_big_shrink_fail_the_gate(
    client: Any, gated: dict[str, Any]
) -> None:
    ds, owner = gated["ds"]["id"], gated["owner"]
    dropped = b"id,email,status,day\n" + b"".join(
        f"{i},u{i}@example.com,new,2024-01-01\n".encode() for i in range(1, 201)
    )
    job = import_csv(client, owner, ds, dropped, filename="t.csv")
    assert job["error"]["code"] == "quality_gate_failed"
    names = {f["name"]: f for f in job["error"]["failing"]}
    assert names["shape"]["sample"] == [{"column": "qty", "problem": "missing"}]
    shrunk = b"id,email,qty,status,day\n1,a@b.co,1,new,2024-01-01\n"
    job = import_csv(client, owner, ds, shrunk, filename="t.csv")
    failing = {f["name"] for f in job["error"]["failing"]}
    assert failing == {"enough rows", "steady"}


def test_rules_are_checked_when_set_and_need_the_admin_role(
    client: Any, admin: dict[str, str], gated: dict[str, Any]
) -> None:
    ds, owner = gated["ds"]["id"], gated["owner"]
    url = f"/api/v1/datasets/{ds}/quality"
    for bad in (
        {"name": "x", "table": "t", "column": "id", "check": "nope"},
        {"name": "x", "table": "t", "column": "id", "check": "between", "args": {"min": 1}},
        {"name": "x", "table": "t", "check": "not_null"},
        {"name": "x", "table": "t", "column": "s", "check": "regex", "args": {"pattern": "("}},
        {"name": "x", "table": "t", "check": "row_count_min", "args": {"min": "ten"}},
    ):
        r = client.put(url, headers=owner, json={"rules": [bad], "threshold": 50})
        assert r.status_code == 422, (bad, r.text)
    dup = client.put(url, headers=owner, json={"rules": [RULES[0], RULES[0]]})
    assert dup.status_code == 422 and dup.json()["code"] == "invalid_rule"
    writer = make_user(client, admin)
    client.put(f"/api/v1/datasets/{ds}/permissions/{writer['X-Test-Username']}",
               headers=owner, json={"role": "write"})  # fmt: skip
    assert client.put(url, headers=writer, json={"rules": []}).status_code == 403
    got = client.get(url, headers=writer).json()
    assert got["threshold"] == 100 and got["gate_branches"] == ["main"]
    assert len(got["rules"]) == len(RULES)
    stranger = make_user(client, admin)
    assert client.get(url, headers=stranger).status_code == 404


def test_a_writer_cannot_reset_or_make_a_gated_branch_below_the_threshold(
    client: Any, admin: dict[str, str], worker: Worker
) -> None:
    """A reset (PATCH) or a new branch is a commit landing on the branch too:
    a writer gets quality_gate_failed (before the fix, a writer put any
    commit on a gated branch this way); the dataset's admins may."""
    owner = make_user(client, admin)
    ds = make_dataset(client, owner, name=f"qreset-{uuid.uuid4().hex[:8]}")["id"]
    good = import_csv(client, owner, ds, GOOD, filename="t.csv")["commit_id"]
    rules = [{"name": "qty cap", "table": "t", "column": "qty", "check": "max",
              "args": {"value": 100}}]  # fmt: skip
    body = {"rules": rules, "threshold": 100, "gate_branches": ["main", "release"]}
    r = client.put(f"/api/v1/datasets/{ds}/quality", headers=owner, json=body)
    assert r.status_code == 200, r.text
    writer = make_user(client, admin)
    client.put(f"/api/v1/datasets/{ds}/permissions/{writer['X-Test-Username']}",
               headers=owner, json={"role": "write"})  # fmt: skip
    r = client.post(f"/api/v1/datasets/{ds}/branches", headers=writer,
                    json={"name": "fix", "from": "main"})  # fmt: skip
    assert r.status_code == 201, r.text
    bad = import_csv(client, writer, ds, BAD, filename="t.csv", branch="fix")["commit_id"]
    reset = client.patch(f"/api/v1/datasets/{ds}/branches/main", headers=writer,
                         json={"commit_id": bad, "expected_commit_id": good})  # fmt: skip
    assert reset.status_code == 409 and reset.json()["code"] == "quality_gate_failed"
    made = client.post(f"/api/v1/datasets/{ds}/branches", headers=writer,
                       json={"name": "release", "from": bad})  # fmt: skip
    assert made.status_code == 409 and made.json()["code"] == "quality_gate_failed"
    refs = {x["name"]: x["commit_id"] for x in
            client.get(f"/api/v1/datasets/{ds}/refs", headers=owner).json()["items"]}  # fmt: skip
    assert refs["main"] == good and "release" not in refs
    by_admin = client.patch(f"/api/v1/datasets/{ds}/branches/main", headers=owner,
                            json={"commit_id": bad, "expected_commit_id": good})  # fmt: skip
    assert by_admin.status_code == 200, by_admin.text

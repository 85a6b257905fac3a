"""A merge is built outside any transaction and lands by compare-and-swap
(decision 0019): when another writer moves the target while the merge is
being built, it is built again on the new head; a client that named the head
it expected gets 409 instead."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from features.merges import service
from tests.conftest import Worker, import_csv, make_dataset

BASE = b"id,v\n" + b"".join(f"{i},{i * 10}\n".encode() for i in range(1, 21))


@pytest.fixture
def ctx(client: Any, admin: dict[str, str], worker: Worker) -> dict[str, Any]:
    return {"c": client, "h": admin}


def _edited(*rows: int) -> bytes:
    """The base with ``v`` negated on the rows with these ids."""
    lines = BASE.decode().splitlines()
    for row in rows:
        lines[row] = f"{row},{-row}"
    return ("\n".join(lines) + "\n").encode()


def _diverged(ctx: dict[str, Any]) -> str:
    """A dataset whose main and feature each edited one row of the base."""
    c, h = ctx["c"], ctx["h"]
    ds = make_dataset(c, h)["id"]
    import_csv(c, h, ds, BASE, filename="t.csv")
    r = c.post(
        f"/api/v1/datasets/{ds}/branches", json={"name": "feature", "from": "main"}, headers=h
    )
    assert r.status_code == 201, r.text
    assert (
        import_csv(c, h, ds, _edited(3), filename="t.csv", branch="feature")["state"] == "succeeded"
    )
    assert import_csv(c, h, ds, _edited(7), filename="t.csv")["state"] == "succeeded"
    return str(ds)


def _head(ctx: dict[str, Any], ds: str, name: str = "main") -> str:
    refs = ctx["c"].get(f"/api/v1/datasets/{ds}/refs", headers=ctx["h"]).json()["items"]
    return str(next(r["commit_id"] for r in refs if r["name"] == name))


def _race(monkeypatch: pytest.MonkeyPatch, other: Callable[[], Any]) -> list[Any]:
    """Run ``other`` (another writer moving main) once, after the merge has
    built its tables and before it lands."""
    real = service.three_way
    done: list[Any] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        out = real(*args, **kwargs)
        if not done:
            done.append(other())
        return out

    monkeypatch.setattr(service, "three_way", wrapped)
    return done


def test_a_merge_whose_target_moved_is_built_again_on_the_new_head(
    ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    c, h = ctx["c"], ctx["h"]
    ds = _diverged(ctx)
    moved = _race(
        monkeypatch,
        lambda: import_csv(c, h, ds, _edited(7, 11), filename="t.csv")["commit_id"],
    )
    r = c.post(
        f"/api/v1/datasets/{ds}/merges", json={"source": "feature", "target": "main"}, headers=h
    )
    assert r.status_code == 200, r.text
    assert moved and r.json()["commit_id"] == _head(ctx, ds)
    commit = c.get(f"/api/v1/datasets/{ds}/commits/{r.json()['commit_id']}", headers=h).json()
    assert commit["parents"][0] == moved[0]  # built on the head the other writer made
    rows = c.get(f"/api/v1/datasets/{ds}/refs/main/data?table=t", headers=h).json()["rows"]
    values = {row[0]: row[1] for row in rows}
    assert (values[3], values[7], values[11], values[12]) == (-3, -7, -11, 120)  # every edit


def test_a_merge_that_named_the_head_it_expected_is_refused_when_it_moved(
    ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    c, h = ctx["c"], ctx["h"]
    ds = _diverged(ctx)
    expected = _head(ctx, ds)
    _race(monkeypatch, lambda: import_csv(c, h, ds, _edited(7, 11), filename="t.csv"))
    r = c.post(
        f"/api/v1/datasets/{ds}/merges",
        json={"source": "feature", "target": "main", "expected_target_commit_id": expected},
        headers=h,
    )
    assert r.status_code == 409 and r.json()["code"] == "ref_conflict", r.text
    assert _head(ctx, ds) != expected  # the other writer's commit stands; no merge landed
    log = c.get(f"/api/v1/datasets/{ds}/commits?ref=main", headers=h).json()["items"]
    assert not any(len(item["parents"]) == 2 for item in log)


def test_a_revert_built_again_reverts_the_commit_it_was_asked_to(
    ctx: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``commit: "main"`` names main's head when the request came; a revert
    rebuilt after another writer moved main still reverts that commit."""
    c, h = ctx["c"], ctx["h"]
    ds = _diverged(ctx)
    asked = _head(ctx, ds)  # main's last import: row 7 negated
    moved = _race(
        monkeypatch,
        lambda: import_csv(c, h, ds, _edited(7, 11), filename="t.csv")["commit_id"],
    )
    r = c.post(
        f"/api/v1/datasets/{ds}/reverts", json={"branch": "main", "commit": "main"}, headers=h
    )
    assert r.status_code == 201, r.text
    assert moved and r.json()["reverted"] == asked and r.json()["reverted"] != moved[0]

"""Versions cost what changed: a re-upload re-uses the rows its parent stored."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import import_csv, make_dataset


def csv_of(rows: list[tuple[int, str]]) -> bytes:
    return ("k,v\n" + "".join(f"{k},{v}\n" for k, v in rows)).encode()


def read_all(http: httpx.Client, auth: dict[str, str], ds: str, ref: str) -> list[list[Any]]:
    out: list[list[Any]] = []
    while True:
        page = http.get(
            f"/api/v1/datasets/{ds}/refs/{ref}/data",
            params={"offset": len(out), "limit": 1000},
            headers=auth,
        ).json()
        out += page["rows"]
        if len(out) >= page["total_rows"]:
            return out


def pieces(
    http: httpx.Client, auth: dict[str, str], ds: str, commit: str, home: Path
) -> list[list[Any]]:
    detail = http.get(f"/api/v1/datasets/{ds}/commits/{commit}", headers=auth).json()
    mid = detail["tables"][0]["manifest_id"]
    path = home / "objects" / "manifests" / mid[:2] / mid[2:4] / mid
    return list(json.loads(path.read_bytes())["pieces"])


def test_a_one_percent_edit_stores_about_one_percent(
    http: httpx.Client, auth: dict[str, str], stack: dict[str, str]
) -> None:
    home = Path(stack["DSA_HOME"])
    ds = make_dataset(http, auth)["id"]
    rows = [(i, f"value-{i}") for i in range(20_000)]
    v1 = import_csv(http, auth, ds, csv_of(rows))["commit_id"]
    rnd = random.Random(3)
    edited = list(rows)
    for i in rnd.sample(range(len(rows)), 200):  # 1 % of rows, anywhere
        edited[i] = (edited[i][0], edited[i][1] + "-x")
    edited.insert(5000, (-1, "inserted"))
    del edited[15000]
    job = import_csv(http, auth, ds, csv_of(edited))
    assert job["state"] == "succeeded", job
    assert read_all(http, auth, ds, job["commit_id"]) == [[k, v] for k, v in edited]
    assert read_all(http, auth, ds, v1) == [[k, v] for k, v in rows]

    old = {p[0] for p in pieces(http, auth, ds, v1, home)}
    new = pieces(http, auth, ds, job["commit_id"], home)
    fresh_rows = sum(p[2] for p in new if p[0] not in old)
    assert fresh_rows == 201  # the 200 edited rows and the inserted one: nothing else
    assert sum(p[2] for p in new) == len(edited)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    base=st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=40),
    script=st.lists(
        st.tuples(st.sampled_from(["ins", "del", "dup", "swap"]), st.integers(0, 1000)),
        max_size=12,
    ),
)
def test_any_edit_script_reads_back_exactly(
    http: httpx.Client, auth: dict[str, str], base: list[str], script: list[tuple[str, int]]
) -> None:
    """Duplicates, reorders, inserts and deletes: the new version reads exactly
    its file, the old one its own (occurrence-aware matching)."""
    ds = make_dataset(http, auth)["id"]
    rows = [(i % 3, v) for i, v in enumerate(base)]  # plenty of duplicate rows
    v1 = import_csv(http, auth, ds, csv_of(rows))["commit_id"]
    new = list(rows)
    for op, n in script:
        i = n % (len(new) + 1)
        if op == "ins":
            new.insert(i, (7, "new"))
        elif op == "del" and new:
            del new[i % len(new)]
        elif op == "dup" and new:
            new.insert(i, new[i % len(new)])
        elif op == "swap" and len(new) > 1:
            j = (i + 1) % len(new)
            i %= len(new)
            new[i], new[j] = new[j], new[i]
    if not new:
        new = [(0, "z")]
    job = import_csv(http, auth, ds, csv_of(new))
    assert job["state"] == "succeeded", job
    assert read_all(http, auth, ds, "main") == [[k, v] for k, v in new]
    assert read_all(http, auth, ds, v1) == [[k, v] for k, v in rows]


def test_a_shuffled_table_is_stored_afresh_not_as_a_thousand_pieces(
    http: httpx.Client, auth: dict[str, str], stack: dict[str, str]
) -> None:
    home = Path(stack["DSA_HOME"])
    ds = make_dataset(http, auth)["id"]
    rows = [(i, f"v{i}") for i in range(20_000)]
    import_csv(http, auth, ds, csv_of(rows))
    shuffled = list(rows)
    random.Random(5).shuffle(shuffled)
    job = import_csv(http, auth, ds, csv_of(shuffled))
    assert job["state"] == "succeeded"
    assert read_all(http, auth, ds, "main") == [[k, v] for k, v in shuffled]
    # 20,000 runs of one row would be past the threshold: fresh chunks instead
    assert len(pieces(http, auth, ds, job["commit_id"], home)) == 20  # 20,000 rows / 1,000

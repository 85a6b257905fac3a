"""Pages with filter, sort and columns over real HTTP: real imports through
the worker (a first version, then a re-upload with edits, so the version read
is a piece table over old and new chunks), checked against the whole table
read page by page without a filter."""

from __future__ import annotations

import csv
import datetime as dt
import io
import random
from typing import Any

import httpx
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.objects import Schema
from core.schema import Column
from features.data import service as data_service
from tests.conftest import import_csv, make_dataset

CITIES = ["Oslo", "Lima", "Rome", "Kyoto", None]
HEADER = ["id", "city", "qty", "price", "day", "at", "big", "note"]


def _rows(n: int, seed: int) -> list[list[Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        out.append(
            [
                i,
                rnd.choice(CITIES),
                None if rnd.random() < 0.1 else rnd.randint(0, 20),
                rnd.choice([0.5, 1.25, 2.0, 3.5, "nan", "inf"])
                if i % 97 == 0
                else rnd.randint(0, 40) / 4,
                (dt.date(2020, 1, 1) + dt.timedelta(days=rnd.randint(0, 60))).isoformat(),
                f"2024-03-0{1 + i % 9}T10:00:00Z",
                2**60 + i if i % 50 == 0 else i,
                f"n{rnd.randint(0, 30)} {'x' if i % 3 else 'y'}",
            ]
        )
    return out


def _csv(rows: list[list[Any]]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(HEADER)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def table(http: httpx.Client, auth: dict[str, str]) -> dict[str, Any]:
    ds = make_dataset(http, auth)["id"]
    v1 = _rows(3000, seed=5)
    job = import_csv(http, auth, ds, _csv(v1), filename="t.csv", message="v1")
    assert job["state"] == "succeeded", job
    # v2: rows edited, removed and inserted, so the manifest mixes old and new chunks
    rnd = random.Random(6)
    v2 = [list(r) for r in v1]
    for i in rnd.sample(range(len(v2)), 60):
        v2[i][2] = 99
    del v2[1000:1040]
    v2[2000:2000] = _rows(25, seed=7)
    v2 += v1[:300]  # repeated rows
    job = import_csv(http, auth, ds, _csv(v2), filename="t.csv", message="v2")
    assert job["state"] == "succeeded", job
    url = f"/api/v1/datasets/{ds}/refs/main/data"
    tables = http.get(f"/api/v1/datasets/{ds}/refs/main/tables", headers=auth).json()
    cols = tables["items"][0]["columns"]
    rows: list[list[Any]] = []
    while True:
        page = http.get(url, params={"offset": len(rows), "limit": 1000}, headers=auth).json()
        rows.extend(page["rows"])
        if not page["rows"]:
            break
    assert len(rows) == page["total_rows"] == len(v2)
    schema = Schema(tuple(Column(c["name"], c["type"], c["nullable"]) for c in cols))
    return {"ds": ds, "url": url, "rows": rows, "schema": schema, "columns": cols, "v1": v1}


def _frame(t: dict[str, Any]) -> pl.DataFrame:
    """The table read without a filter, as typed polars columns (JSON back to values)."""
    names = [c["name"] for c in t["columns"]]
    data = {n: [r[i] for r in t["rows"]] for i, n in enumerate(names)}
    data["price"] = [
        None
        if v is None
        else float(v.replace("Infinity", "inf"))
        if isinstance(v, str)
        else float(v)
        for v in data["price"]
    ]
    data["big"] = [int(v) for v in data["big"]]
    data["day"] = [dt.date.fromisoformat(v) for v in data["day"]]
    data["at"] = [dt.datetime.fromisoformat(v.replace("Z", "+00:00")) for v in data["at"]]
    return (
        pl.DataFrame(data).with_columns(pl.col("at").dt.cast_time_unit("us")).with_row_index("pos")
    )


def _get(
    http: httpx.Client, auth: dict[str, str], t: dict[str, Any], **params: Any
) -> httpx.Response:
    return http.get(t["url"], params=params, headers=auth)


def test_the_table_is_typed(table: dict[str, Any]) -> None:
    assert [c["type"] for c in table["columns"]] == [
        "integer",
        "string",
        "integer",
        "float",
        "date",
        "datetime_tz",
        "integer",
        "string",
    ]


def test_filter_total_and_projection(
    http: httpx.Client, auth: dict[str, str], table: dict[str, Any]
) -> None:
    r = _get(http, auth, table, filter="city = 'Oslo' and qty > 15", columns="id,qty", limit=1000)
    assert r.status_code == 200, r.text
    body = r.json()
    expected = [
        [row[0], row[2]]
        for row in table["rows"]
        if row[1] == "Oslo" and row[2] is not None and row[2] > 15
    ]
    assert body["total_rows"] == len(expected) > 0
    assert body["rows"] == expected
    assert body["columns"] == [
        {"name": "id", "type": "integer"},
        {"name": "qty", "type": "integer"},
    ]
    assert body["filter"] == "city = 'Oslo' and qty > 15"
    # past the end: no rows, same total
    far = _get(http, auth, table, filter="city = 'Oslo' and qty > 15", offset=10_000).json()
    assert far["rows"] == [] and far["total_rows"] == len(expected)


def test_every_operator_over_http(
    http: httpx.Client, auth: dict[str, str], table: dict[str, Any]
) -> None:
    frame = _frame(table)
    for text in [
        "qty = 99",
        "qty != 3",
        "qty < 2 or qty >= 19",
        "qty <= 1 and not (city = 'Rome')",
        "city in ('Oslo', 'Lima')",
        "city not in ('Oslo', 'Lima')",
        "city is null",
        "qty is not null and city is not null",
        "note contains 'y'",
        "note starts_with 'n1'",
        "day >= '2020-02-15'",
        "at < '2024-03-03T00:00:00Z'",
        "price > 9.5 or price = 'NaN'",
        "big > 9007199254740992",
        "(city = 'Oslo' or city = 'Lima') and (qty < 3 or qty > 17)",
    ]:
        expected = frame.filter(data_service.parse_filter(text, table["schema"]))["pos"].to_list()
        body = _get(http, auth, table, filter=text, columns="id", limit=1000).json()
        assert body["total_rows"] == len(expected), text
        assert body["rows"] == [table["rows"][p][:1] for p in expected[:1000]], text


def test_sorted_pages_are_stable_with_ties(
    http: httpx.Client, auth: dict[str, str], table: dict[str, Any]
) -> None:
    # city and qty repeat a lot: the tie-break is the table position
    rows = table["rows"]
    idx = list(range(len(rows)))
    expected = sorted(idx, key=lambda p: (rows[p][2] is None, -(rows[p][2] or 0)))
    expected = sorted(expected, key=lambda p: (rows[p][1] is None, rows[p][1] or ""))
    for spelling in ["city,-qty", "city:asc,qty:desc"]:
        got: list[list[Any]] = []
        offset = 0
        while True:
            body = _get(
                http, auth, table, sort=spelling, offset=offset, limit=333, columns="id,city,qty"
            ).json()
            assert body["total_rows"] == len(rows)
            assert body["sort"] == [
                {"column": "city", "descending": False},
                {"column": "qty", "descending": True},
            ]
            if not body["rows"]:
                break
            got.extend(body["rows"])
            offset += 333
        assert got == [[rows[p][0], rows[p][1], rows[p][2]] for p in expected]


def test_filter_and_sort_together(
    http: httpx.Client, auth: dict[str, str], table: dict[str, Any]
) -> None:
    frame = _frame(table)
    expected = (
        frame.filter(pl.col("qty") > 10)
        .sort(["day", "price", "pos"], descending=[True, False, False], nulls_last=True)["pos"]
        .to_list()
    )
    pages = [
        _get(
            http,
            auth,
            table,
            filter="qty > 10",
            sort="-day,price",
            offset=o,
            limit=100,
            columns="id",
        ).json()
        for o in range(0, len(expected) + 100, 100)
    ]
    assert all(p["total_rows"] == len(expected) for p in pages)
    assert [r[0] for p in pages for r in p["rows"]] == [table["rows"][p][0] for p in expected]


def test_values_are_typed_json(
    http: httpx.Client, auth: dict[str, str], table: dict[str, Any]
) -> None:
    body = _get(http, auth, table, filter="id = 0", limit=1).json()
    row = body["rows"][0]
    v1 = table["v1"][0]
    assert row[0] == 0 and isinstance(row[0], int)
    assert row[4] == v1[4] and row[5] == "2024-03-01T10:00:00Z"
    assert row[6] == str(2**60)  # beyond 2^53: a string
    assert row[3] in ("NaN", "Infinity", 0.5, 1.25, 2.0, 3.5)
    nan = _get(http, auth, table, filter="price = 'NaN'", columns="price", limit=1000).json()
    assert all(r == ["NaN"] for r in nan["rows"])
    nulls = _get(http, auth, table, filter="qty is null", columns="qty,city", limit=5).json()
    assert nulls["rows"] and all(r[0] is None for r in nulls["rows"])


@pytest.mark.parametrize(
    ("params", "code", "position"),
    [
        ({"filter": "qty > 'abc'"}, "invalid_filter", 6),
        ({"filter": "nope = 1"}, "unknown_column", 0),
        ({"filter": "city = 'Oslo' and"}, "invalid_filter", 17),
        ({"filter": "(qty = 1"}, "invalid_filter", 8),
        ({"sort": "city,-nope"}, "unknown_column", 6),
        ({"sort": "city:sideways"}, "invalid_sort", 5),
    ],
)
def test_bad_filters_are_400_problems(
    http: httpx.Client,
    auth: dict[str, str],
    table: dict[str, Any],
    params: dict[str, str],
    code: str,
    position: int,
) -> None:
    r = _get(http, auth, table, **params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    p = r.json()
    assert p["code"] == code and p["position"] == position and p["status"] == 400
    assert p["type"] == f"https://dsa.dev/problems/{code.replace('_', '-')}"
    assert p["title"] == "Bad request" and str(position) in p["detail"]


def test_old_version_filters_its_own_rows(
    http: httpx.Client, auth: dict[str, str], table: dict[str, Any]
) -> None:
    hist = http.get(f"/api/v1/datasets/{table['ds']}/commits", headers=auth).json()["items"]
    v1_commit = hist[1]["id"]
    url = f"/api/v1/datasets/{table['ds']}/refs/{v1_commit[:12]}/data"
    body = http.get(url, params={"filter": "qty = 99", "limit": 10}, headers=auth).json()
    assert body["commit_id"] == v1_commit and body["total_rows"] == 0
    empty = http.get(url, params={"filter": "  ", "limit": 1}, headers=auth).json()
    assert empty["total_rows"] == 3000 and "filter" not in empty


LEAVES = st.one_of(
    st.builds(
        "qty {} {}".format, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), st.integers(-1, 21)
    ),
    st.builds(
        "city {} '{}'".format,
        st.sampled_from(["=", "!=", "<", ">="]),
        st.sampled_from(["Oslo", "Lima", "M"]),
    ),
    st.builds(
        "{} is {}null".format, st.sampled_from(["qty", "city"]), st.sampled_from(["", "not "])
    ),
    st.builds(
        "note {} '{}'".format,
        st.sampled_from(["contains", "starts_with"]),
        st.sampled_from(["x", "n2", "1 "]),
    ),
    st.builds("day {} '2020-01-{:02d}'".format, st.sampled_from(["<", ">="]), st.integers(1, 31)),
    st.builds(
        "price {} {}".format, st.sampled_from(["<", ">"]), st.sampled_from(["2.5", "5", "9.75"])
    ),
)
FILTERS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds("({}) {} ({})".format, inner, st.sampled_from(["and", "or"]), inner),
        st.builds("not ({})".format, inner),
    ),
    max_leaves=4,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(where=FILTERS, offset=st.integers(0, 400), limit=st.integers(0, 300))
def test_filtered_pages_match_filtering_the_whole_table(
    http: httpx.Client,
    auth: dict[str, str],
    table: dict[str, Any],
    where: str,
    offset: int,
    limit: int,
) -> None:
    frame = _frame(table)
    expected = frame.filter(data_service.parse_filter(where, table["schema"]))["pos"].to_list()
    body = _get(http, auth, table, filter=where, offset=offset, limit=limit).json()
    assert body["total_rows"] == len(expected), where
    assert body["rows"] == [table["rows"][p] for p in expected[offset : offset + limit]], where

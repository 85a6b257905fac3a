"""Exact and nested types end to end (issue 17, "Exact types"): a Parquet file's
decimals, times, durations, lists and structs keep their types through an
import, come back bit-exact from every export that can hold them, filter and
sort by value, and show exactly in pages and compares."""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from tests.conftest import import_csv, make_dataset

D = decimal.Decimal
N = 2_100  # over two of the test stack's 1,000-row chunks


def _table(bump: int = 0) -> pa.Table:
    i = range(N)
    return pa.table(
        {
            "id": pa.array(list(i), pa.int64()),
            # 9.50 < 10.00 < 100.00 as numbers; as text "9.50" sorts last
            "price": pa.array(
                [
                    None
                    if k % 13 == 0
                    else D(k * 5 + (bump if k == 1 else 0)).scaleb(-2) + D("9.50")
                    for k in i
                ],
                pa.decimal128(12, 2),
            ),
            "exact": pa.array([D(f"{10**19 + k}.{k:010d}") for k in i], pa.decimal128(38, 10)),
            "at": pa.array([dt.time(k % 24, k % 60, 0, k) for k in i], pa.time64("us")),
            "took": pa.array(
                [None if k % 7 == 0 else dt.timedelta(seconds=k, microseconds=5) for k in i],
                pa.duration("ns"),
            ),
            "tags": pa.array([[k, None] if k % 2 else [] for k in i], pa.list_(pa.int32())),
            "meta": pa.array(
                [{"w": D("1.5"), "s": f"x{k}"} if k % 3 else None for k in i],
                pa.struct([("w", pa.decimal128(5, 1)), ("s", pa.string())]),
            ),
        }
    )


@pytest.fixture(scope="module")
def stored(client: Any, admin: dict[str, str], worker: Any) -> dict[str, Any]:
    ds = make_dataset(client, admin)
    buf = io.BytesIO()
    pq.write_table(_table(), buf, row_group_size=700)
    job = import_csv(client, admin, ds["id"], buf.getvalue(), filename="prices.parquet")
    assert job["state"] == "succeeded", job
    return {"ds": ds, "commit": job["commit_id"]}


def _url(s: dict[str, Any], what: str) -> str:
    return f"/api/v1/datasets/{s['ds']['id']}/refs/main/{what}"


def test_the_types_are_kept_and_described(
    client: Any, admin: dict[str, str], stored: dict[str, Any]
) -> None:
    tables = client.get(_url(stored, "tables"), headers=admin).json()
    cols = {c["name"]: c for c in tables["items"][0]["columns"]}
    assert cols["price"] == {
        "name": "price", "type": "decimal", "precision": 12, "scale": 2, "nullable": True
    }  # fmt: skip
    assert cols["exact"]["precision"] == 38 and cols["exact"]["scale"] == 10
    assert cols["at"]["type"] == "time" and cols["took"]["type"] == "duration"
    assert cols["tags"]["type"] == "list" and cols["tags"]["item"] == {"type": "integer"}
    assert cols["meta"]["fields"] == [
        {"name": "w", "type": "decimal", "precision": 5, "scale": 1},
        {"name": "s", "type": "string"},
    ]


def test_pages_show_values_exactly(
    client: Any, admin: dict[str, str], stored: dict[str, Any]
) -> None:
    page = client.get(_url(stored, "data"), params={"limit": 4}, headers=admin).json()
    assert page["columns"][1] == {"name": "price", "type": "decimal", "precision": 12, "scale": 2}
    row = page["rows"][1]
    assert row[1] == "9.55"
    assert row[2] == "10000000000000000001.0000000001"  # 38 digits, no float on the way
    assert row[3] == "01:01:00.000001"
    assert row[4] == "PT1.000005S"
    assert row[5] == [1, None]
    assert row[6] == {"w": "1.5", "s": "x1"}
    assert page["rows"][0][1] is None and page["rows"][0][6] is None


def test_filters_and_sorts_compare_numbers_not_text(
    client: Any, admin: dict[str, str], stored: dict[str, Any]
) -> None:
    def rows(**params: Any) -> list[list[Any]]:
        r = client.get(_url(stored, "data"), params=params, headers=admin)
        assert r.status_code == 200, r.text
        return r.json()["rows"]  # type: ignore[no-any-return]

    few = rows(filter="price < 9.6", columns="id,price")
    assert few == [[1, "9.55"]]  # as text, "10.00" … "99.95" would all be below "9.6"
    assert rows(filter="price = '9.550'", columns="id") == [[1]]
    top = rows(filter="price is not null", sort="-price", limit=2, columns="price")
    assert top == [["114.45"], ["114.40"]]
    assert rows(filter="price in (9.55, 9.6)", columns="id") == [[1], [2]]
    assert rows(filter="at = '01:01:00.000001'", columns="id") == [[1]]
    assert rows(filter="took >= 'PT34M59S'", columns="id") == [[2099]]
    assert rows(filter="took = 'PT1.000005S'", columns="id") == [[1]]
    assert rows(filter="took = 1000005", columns="id") == [[1]]
    bad = client.get(_url(stored, "data"), params={"filter": "price > 'abc'"}, headers=admin)
    assert bad.status_code == 400 and "expected a number" in bad.json()["detail"]
    bad = client.get(_url(stored, "data"), params={"filter": "tags = 1"}, headers=admin)
    assert bad.status_code == 400


def _export(client: Any, admin: dict[str, str], s: dict[str, Any], fmt: str) -> bytes:
    r = client.get(_url(s, "export"), params={"format": fmt, "raw": "true"}, headers=admin)
    assert r.status_code == 200, r.text
    return r.content  # type: ignore[no-any-return]


def test_parquet_and_arrow_exports_are_bit_exact(
    client: Any, admin: dict[str, str], stored: dict[str, Any]
) -> None:
    want = _table()
    got = pq.read_table(io.BytesIO(_export(client, admin, stored, "parquet")))
    assert got.schema.field("price").type == pa.decimal128(12, 2)
    assert got.schema.field("exact").type == pa.decimal128(38, 10)
    assert got.schema.field("at").type == pa.time64("us")
    assert got.schema.field("took").type == pa.duration("us")
    for name in ("price", "exact", "at"):
        assert got.column(name).equals(want.column(name).cast(got.schema.field(name).type))
    assert got.column("took").to_pylist() == want.column("took").cast(pa.duration("us")).to_pylist()
    assert got.column("tags").to_pylist() == want.column("tags").to_pylist()
    assert got.column("meta").to_pylist() == want.column("meta").to_pylist()
    arrow = ipc.open_stream(io.BytesIO(_export(client, admin, stored, "arrow"))).read_all()
    assert arrow.column("price").equals(got.column("price"))
    assert arrow.column("exact").equals(got.column("exact"))


def test_csv_ndjson_and_xlsx_exports_write_exact_values(
    client: Any, admin: dict[str, str], stored: dict[str, Any]
) -> None:
    lines = _export(client, admin, stored, "csv").decode().splitlines()
    assert lines[0] == "id,price,exact,at,took,tags,meta"
    assert lines[2] == (
        '1,9.55,10000000000000000001.0000000001,01:01:00.000001,PT1.000005S,"[1,null]",'
        '"{""w"":""1.5"",""s"":""x1""}"'
    )
    first = json.loads(_export(client, admin, stored, "ndjson").splitlines()[1])
    assert (
        first["price"] == "9.55" and first["took"] == "PT1.000005S" and first["tags"] == [1, None]
    )
    book = openpyxl.load_workbook(io.BytesIO(_export(client, admin, stored, "xlsx")))
    sheet = book.worksheets[0]
    price, exact, at, took = (sheet.cell(row=3, column=c) for c in (2, 3, 4, 5))
    assert price.value == pytest.approx(9.55) and price.number_format == "0.00"
    assert exact.value == "10000000000000000001.0000000001"  # beyond a double: text
    assert at.number_format == "hh:mm:ss.000"
    assert took.number_format == "[h]:mm:ss.000"
    assert took.value == pytest.approx(1.000005 / 86400) or isinstance(took.value, dt.timedelta)


def test_a_csv_export_reimported_is_the_same_table(
    client: Any, admin: dict[str, str], stored: dict[str, Any]
) -> None:
    """The CSV's text reads back as the same values of the same types (the
    table keeps its types on a re-upload): the same rows, the same digest."""
    tables = _url(stored, "tables?digest=true")
    before = client.get(tables, headers=admin).json()["items"][0]
    text = _export(client, admin, stored, "csv")
    job = import_csv(client, admin, stored["ds"]["id"], text, filename="prices.csv", mode="replace")
    assert job["state"] == "succeeded", job
    after = client.get(tables, headers=admin).json()["items"][0]
    assert after["columns"] == before["columns"]
    assert after["digest"] == before["digest"] and before["digest"].startswith("blake3:")


def test_csv_columns_declared_exact(client: Any, admin: dict[str, str], worker: Any) -> None:
    ds = make_dataset(client, admin)
    csv = b"id,amount,at,took\n1,12.30,08:15:00,PT1H30M\n2,-0.05,23:59:59.5,-5\n3,,,\n"
    types = {
        "amount": {"type": "decimal", "precision": 10, "scale": 2},
        "at": "time",
        "took": "duration",
    }
    job = import_csv(client, admin, ds["id"], csv, options=json.dumps({"column_types": types}))
    assert job["state"] == "succeeded", job
    page = client.get(f"/api/v1/datasets/{ds['id']}/refs/main/data", headers=admin).json()
    assert page["rows"] == [
        [1, "12.30", "08:15:00", "PT1H30M"],
        [2, "-0.05", "23:59:59.500000", "-PT0.000005S"],
        [3, None, None, None],
    ]
    # a value needing more scale than declared is refused, never rounded
    job = import_csv(
        client, admin, ds["id"], b"id,amount\n1,1.005\n",
        options=json.dumps({"column_types": {"amount": "decimal(10,2)"}}),
    )  # fmt: skip
    assert job["state"] == "failed" and job["error"]["code"] == "bad_value"
    assert job["error"]["line"] == 2 and job["error"]["column"] == "amount"
    r = client.post(
        f"/api/v1/datasets/{ds['id']}/refs/main/uploads",
        files={"file": ("x.csv", b"a\n1\n", "text/csv")},
        data={"options": json.dumps({"column_types": {"a": "decimal(40,2)"}})},
        headers=admin,
    )
    assert r.status_code == 422 and "precision" in r.text


def test_compare_shows_decimal_cells_exactly(
    client: Any, admin: dict[str, str], stored: dict[str, Any]
) -> None:
    ds = make_dataset(client, admin, primary_key=["id"])
    commits = []
    for bump in (0, 1):
        buf = io.BytesIO()
        pq.write_table(_table(bump), buf)
        job = import_csv(
            client, admin, ds["id"], buf.getvalue(), filename="p.parquet", mode="replace"
        )
        assert job["state"] == "succeeded", job
        commits.append(job["commit_id"])
    spec = f"{commits[0]}...{commits[1]}"
    r = client.get(f"/api/v1/datasets/{ds['id']}/compare/{spec}", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    text = json.dumps(body)
    assert '"9.55"' in text and '"9.56"' in text, text[:2000]


def test_csv_infers_decimal_where_floats_would_round(
    client: Any, admin: dict[str, str], worker: Any
) -> None:
    ds = make_dataset(client, admin)
    csv = (
        b"id,amount,ratio,sci\n1,12345678901234567.89,0.5,1e3\n2,-0.5,0.25,1234567890123456789.5\n"
    )
    job = import_csv(client, admin, ds["id"], csv)
    assert job["state"] == "succeeded", job
    page = client.get(f"/api/v1/datasets/{ds['id']}/refs/main/data", headers=admin).json()
    types = {c["name"]: c for c in page["columns"]}
    assert types["amount"] == {"name": "amount", "type": "decimal", "precision": 19, "scale": 2}
    assert types["ratio"]["type"] == "float"  # 15 digits or fewer: a float keeps them
    assert types["sci"]["type"] == "float"  # exponent notation: not fixed-point
    assert [r[1] for r in page["rows"]] == ["12345678901234567.89", "-0.50"]


def test_a_pulled_parquet_export_verifies_against_its_digest(
    client: Any, admin: dict[str, str], stored: dict[str, Any], tmp_path: Any
) -> None:
    """What ``dsa pull`` checks: the lock's ``name:type`` columns (types as
    their canonical text) and the digest of the downloaded Parquet file."""
    from api.client.lock import _columns, digest_of
    from core.schema import Column

    table = client.get(_url(stored, "tables?digest=true"), headers=admin).json()["items"][0]
    spec = [f"{c['name']}:{Column.from_json(c).type}" for c in table["columns"]]
    assert spec[1] == "price:decimal(12,2)"
    assert spec[6] == 'meta:struct<"w":decimal(5,1),"s":string>'
    path = tmp_path / "prices.parquet"
    path.write_bytes(_export(client, admin, stored, "parquet"))
    assert digest_of(path, _columns(spec)) == (table["digest"], N)
    odd = _columns(["a:b:integer", 'n:struct<"x:y":list<time>>'])
    assert [(c.name, c.type) for c in odd] == [
        ("a:b", "integer"), ("n", 'struct<"x:y":list<time>>')
    ]  # fmt: skip


def test_what_a_review_found_stays_fixed(
    client: Any, admin: dict[str, str], stored: dict[str, Any]
) -> None:
    """Each of these was a 500, a wrong answer or a silently changed value."""
    ds = stored["ds"]["id"]
    r = client.post(
        f"/api/v1/datasets/{ds}/refs/main/uploads",
        files={"file": ("x.csv", b"c\n1\n", "text/csv")},
        data={"options": json.dumps({"column_types": {"c": "struct<" + "[" * 1000}})},
        headers=admin,
    )
    assert r.status_code == 422, r.text
    # filters: a value the column cannot hold matches nothing; 39 digits are a 400
    for f, want in (("price in (9.555)", 0), ("price in (9.551, 9.549)", 0),
                    ("price in (9.55, 123456789012)", 1), ("took in ('P99999D')", 0)):  # fmt: skip
        got = client.get(_url(stored, "data"), params={"filter": f}, headers=admin)
        assert got.status_code == 200 and len(got.json()["rows"]) == want, (f, got.text)
    bad = client.get(_url(stored, "data"), params={"filter": "price = " + "1" * 39}, headers=admin)
    assert bad.status_code == 400
    # a nested uint64 above 2^63-1 is refused, not wrapped to -1
    other = make_dataset(client, admin)
    buf = io.BytesIO()
    pq.write_table(pa.table({"l": pa.array([[2**64 - 1]], pa.list_(pa.uint64()))}), buf)
    job = import_csv(client, admin, other["id"], buf.getvalue(), filename="u.parquet")
    assert job["state"] == "failed" and job["error"]["code"] == "bad_value", job
    # a duration beyond 64-bit microseconds fails the job naming the column
    job = import_csv(
        client, admin, other["id"], b"d\nP9999999999D\n",
        options=json.dumps({"column_types": {"d": "duration"}}),
    )  # fmt: skip
    assert job["state"] == "failed" and job["error"]["code"] == "bad_value", job
    assert job["error"]["column"] == "d"


def test_a_three_way_merge_of_exact_types_keeps_both_edits(
    client: Any, admin: dict[str, str], worker: Any
) -> None:
    ds = make_dataset(client, admin, primary_key=["id"])["id"]

    def put(table: pa.Table, branch: str) -> None:
        buf = io.BytesIO()
        pq.write_table(table, buf)
        job = import_csv(
            client, admin, ds, buf.getvalue(), filename="p.parquet", branch=branch, mode="replace"
        )
        assert job["state"] == "succeeded", job

    base = _table()
    put(base, "main")
    r = client.post(f"/api/v1/datasets/{ds}/branches", json={"name": "fix", "from": "main"},
                    headers=admin)  # fmt: skip
    assert r.status_code == 201, r.text
    price = base.column("price").to_pylist()
    ours, theirs = list(price), list(price)
    ours[5], theirs[6] = D("0.01"), D("99999999.99")
    put(base.set_column(1, "price", pa.array(ours, pa.decimal128(12, 2))), "main")
    put(base.set_column(1, "price", pa.array(theirs, pa.decimal128(12, 2))), "fix")
    r = client.post(f"/api/v1/datasets/{ds}/merges", json={"source": "fix", "target": "main"},
                    headers=admin)  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["fast_forward"] is False
    rows = client.get(f"/api/v1/datasets/{ds}/refs/main/data", params={"limit": 8},
                      headers=admin).json()["rows"]  # fmt: skip
    assert rows[5][1] == "0.01" and rows[6][1] == "99999999.99"
    assert rows[1][6] == {"w": "1.5", "s": "x1"}  # the struct column came through the merge

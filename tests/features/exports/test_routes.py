"""Exports through the ASGI app: every format read back by an independent
reader equals the stored rows, types included; options, errors, ETag/304,
Range and HEAD on Parquet, formula neutralisation, signed links."""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import io
import json
import math
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import openpyxl
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import python_calamine
import zstandard

from tests.conftest import import_csv, make_dataset, make_user

UTC = dt.UTC
N = 2_500  # over two 1,000-row chunks (the test stack's DSA_CHUNK_ROWS)


def _table() -> pa.Table:
    i = list(range(N))
    strings: list[str | None] = [f"name {k}" for k in i]
    strings[1] = 'quote " comma , newline\n and unicode é ✓'
    strings[2] = ""
    strings[3] = None
    strings[4] = "  padded  "
    strings[5] = "tab\there & <xml>"
    return pa.table(
        {
            "id": pa.array(i, pa.int64()),
            "big": pa.array([2**62 + k if k % 7 == 0 else -k for k in i], pa.int64()),
            "qty": pa.array([None if k % 11 == 0 else k * 3 for k in i], pa.int64()),
            "price": pa.array([k / 8 + 0.1 for k in i], pa.float64()),
            "flag": pa.array([None if k % 5 == 0 else k % 2 == 0 for k in i], pa.bool_()),
            "name": pa.array(strings, pa.large_string()),
            "blob": pa.array([bytes([k % 256, 0, 255]) if k % 3 else None for k in i]),
            "day": pa.array([dt.date(2000, 1, 1) + dt.timedelta(days=k) for k in i]),
            "at": pa.array(
                [dt.datetime(2020, 1, 1, 12) + dt.timedelta(seconds=k, milliseconds=k) for k in i],
                pa.timestamp("us"),
            ),
            "at_tz": pa.array(
                [dt.datetime(2021, 6, 1, tzinfo=UTC) + dt.timedelta(minutes=k) for k in i],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


@pytest.fixture(scope="module")
def stored(client: Any, admin: dict[str, str], worker: Any) -> dict[str, Any]:
    ds = make_dataset(client, admin)
    buf = io.BytesIO()
    pq.write_table(_table(), buf)
    job = import_csv(client, admin, ds["id"], buf.getvalue(), filename="sales.parquet")
    assert job["state"] == "succeeded", job
    tables = client.get(f"/api/v1/datasets/{ds['id']}/refs/main/tables", headers=admin).json()
    types = {c["name"]: c["type"] for c in tables["items"][0]["columns"]}
    assert types["blob"] == "binary" and types["at_tz"] == "datetime_tz", types
    return {"ds": ds, "commit": job["commit_id"], "types": types, "table": tables["items"][0]}


def _url(s: dict[str, Any], ref: str | None = None) -> str:
    return f"/api/v1/datasets/{s['ds']['id']}/refs/{ref or s['commit']}/export"


def _get(client: Any, s: dict[str, Any], headers: dict[str, str], **params: Any) -> Any:
    r = client.get(_url(s), params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r


def _expected() -> pl.DataFrame:
    return pl.from_arrow(_table())  # type: ignore[return-value]


def _decompress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.decompress(data)
    if compression == "zstd":
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_csv_round_trip(
    client: Any, admin: dict[str, str], stored: dict[str, Any], fmt: str, compression: str
) -> None:
    r = _get(client, stored, admin, format=fmt, compression=compression, raw="true")
    suffix = {"none": "", "gzip": ".gz", "zstd": ".zst"}[compression]
    assert f'.{fmt}{suffix}"' in r.headers["content-disposition"]
    text = _decompress(r.content, compression)
    exp = _expected()
    schema = dict(exp.schema)
    schema["blob"] = pl.String
    got = pl.read_csv(
        text,
        separator="\t" if fmt == "tsv" else ",",
        schema=schema,
    )
    got = got.with_columns(pl.col("blob").str.decode("base64"))
    # an empty string is written "" and a null as nothing: they stay apart
    assert got["name"][2] == "" and got["name"][3] is None
    assert got.equals(exp), (got.head(6), exp.head(6))


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_parquet_round_trip(
    client: Any, admin: dict[str, str], stored: dict[str, Any], compression: str
) -> None:
    r = _get(client, stored, admin, format="parquet", compression=compression)
    assert r.headers["content-type"] == "application/vnd.apache.parquet"
    assert r.content[:4] == b"PAR1"
    got = pl.read_parquet(io.BytesIO(r.content))  # polars' own (Rust) reader
    assert got.equals(_expected())
    codec = pq.ParquetFile(io.BytesIO(r.content)).metadata.row_group(0).column(0).compression
    assert codec == {"none": "UNCOMPRESSED", "gzip": "GZIP", "zstd": "ZSTD"}[compression]


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_arrow_round_trip(
    client: Any, admin: dict[str, str], stored: dict[str, Any], compression: str
) -> None:
    r = _get(client, stored, admin, format="arrow", compression=compression)
    got = pl.read_ipc_stream(io.BytesIO(_decompress(r.content, compression)))
    assert got.equals(_expected())


def _json_value(v: Any, kind: str) -> Any:
    if v is None:
        return None
    if kind == "integer":
        return v if abs(v) <= 2**53 else str(v)
    if kind == "binary":
        return base64.b64encode(v).decode()
    if kind == "date":
        return v.isoformat()
    if kind == "datetime":
        return v.isoformat()
    if kind == "datetime_tz":
        return v.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return v


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_ndjson_round_trip(
    client: Any, admin: dict[str, str], stored: dict[str, Any], compression: str
) -> None:
    r = _get(client, stored, admin, format="ndjson", compression=compression)
    lines = _decompress(r.content, compression).decode().splitlines()
    got = [json.loads(line) for line in lines]
    types = stored["types"]
    exp = [{k: _json_value(v, types[k]) for k, v in row.items()} for row in _table().to_pylist()]
    assert got == exp
    # the same values as a page of the data API
    page = client.get(
        f"/api/v1/datasets/{stored['ds']['id']}/refs/{stored['commit']}/data?limit=20",
        headers=admin,
    ).json()
    assert [list(row.values()) for row in got[:20]] == page["rows"]


def test_xlsx_round_trip(client: Any, admin: dict[str, str], stored: dict[str, Any]) -> None:
    r = _get(client, stored, admin, format="xlsx", raw="true")
    assert r.headers["content-disposition"].endswith('.xlsx"; filename*=UTF-8' + "''" + _fname(r))
    wb = openpyxl.load_workbook(io.BytesIO(r.content), read_only=True)
    ws = wb[wb.sheetnames[0]]
    rows = list(ws.iter_rows(values_only=True))
    header, body = rows[0], rows[1:]
    exp = _table()
    assert list(header) == exp.column_names
    assert len(body) == N
    for got, want in zip(body, exp.to_pylist(), strict=True):
        for (name, w), g in zip(want.items(), got, strict=True):
            kind = stored["types"][name]
            if w is None:
                assert g is None, (name, g)
            elif kind == "integer" and abs(w) > 2**53:
                assert g == str(w)  # Excel numbers are doubles: big integers as text
            elif kind == "binary":
                assert base64.b64decode(g) == w
            elif kind == "date":
                assert g == dt.datetime.combine(w, dt.time())  # openpyxl reads dates as datetimes
            elif kind in ("datetime", "datetime_tz"):
                naive = w.astimezone(UTC).replace(tzinfo=None) if w.tzinfo else w
                assert abs(g - naive) < dt.timedelta(milliseconds=1), (name, g, naive)
            elif kind == "float":
                assert math.isclose(g, w, rel_tol=0, abs_tol=0) or g == w
            else:
                assert g == w and type(g) is type(w), (name, g, w)


def _fname(r: Any) -> str:
    return r.headers["content-disposition"].rsplit("''", 1)[1]


def test_xlsx_special_values_and_more_sheets(
    client: Any, admin: dict[str, str], worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from features.exports import xlsx

    ds = make_dataset(client, admin)
    t = pa.table(
        {
            "x": pa.array([1.5, float("nan"), float("inf"), -float("inf"), None] * 3),
            "s": pa.array(["a\x01b", "_x0041_", "=1+1", "<&>", "ok"] * 3, pa.large_string()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(t, buf)
    job = import_csv(client, admin, ds["id"], buf.getvalue(), filename="odd.parquet")
    assert job["state"] == "succeeded", job
    monkeypatch.setattr(xlsx, "SHEET_ROWS", 4)  # 15 rows: sheets of 4, 4, 4 and 3
    r = client.get(
        f"/api/v1/datasets/{ds['id']}/refs/main/export?format=xlsx&raw=true", headers=admin
    )
    assert r.status_code == 200, r.text
    # calamine (what Excel does) decodes the _xHHHH_ escapes; openpyxl does not
    wb = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(r.content))
    assert wb.sheet_names == ["odd", "odd (2)", "odd (3)", "odd (4)"]
    sheets = [wb.get_sheet_by_name(n).to_python(skip_empty_area=False) for n in wb.sheet_names]
    assert [sh[0] for sh in sheets] == [["x", "s"]] * 4
    rows = [tuple(row) for sh in sheets for row in sh[1:]]
    assert rows[:5] == [
        (1.5, "a\x01b"),
        ("NaN", "_x0041_"),
        ("Infinity", "=1+1"),
        ("-Infinity", "<&>"),
        ("", "ok"),
    ]
    assert len(rows) == 15
    assert openpyxl.load_workbook(io.BytesIO(r.content)).sheetnames == wb.sheet_names


# --------------------------------------------------------------------------- options


def test_columns_filter_and_names(
    client: Any, admin: dict[str, str], stored: dict[str, Any]
) -> None:
    r = _get(
        client,
        stored,
        admin,
        format="parquet",
        columns="price,id",
        filter="qty > 3000 and id < 2000",
    )
    got = pl.read_parquet(io.BytesIO(r.content))
    exp = _expected().filter((pl.col("qty") > 3000) & (pl.col("id") < 2000)).select("price", "id")
    assert got.columns == ["price", "id"] and got.equals(exp) and got.height > 0
    name = stored["ds"]["name"]
    assert (
        f'filename="{name}-sales-{stored["commit"][:12]}.parquet"'
        in r.headers["content-disposition"]
    )
    # a filter that keeps nothing: a valid, empty file with the columns
    r = _get(client, stored, admin, format="csv", columns="id", filter="id < 0")
    assert r.text == "id\n"
    r = _get(client, stored, admin, format="xlsx", columns="id", filter="id < 0")
    assert list(openpyxl.load_workbook(io.BytesIO(r.content)).active.values) == [("id",)]


def _problem(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == code


def test_bad_options(client: Any, admin: dict[str, str], stored: dict[str, Any]) -> None:
    url = _url(stored)
    _problem(client.get(url + "?format=pdf", headers=admin), 422, "unknown_export_format")
    _problem(client.get(url + "?compression=brotli", headers=admin), 422, "unknown_compression")
    _problem(
        client.get(url + "?format=xlsx&compression=gzip", headers=admin),
        422,
        "unsupported_compression",
    )
    _problem(client.get(url + "?columns=nope", headers=admin), 422, "unknown_column")
    _problem(client.get(url + "?columns=id,id", headers=admin), 422, "duplicate_column")
    _problem(client.get(url + "?table=nope", headers=admin), 404, "table_not_found")
    _problem(client.get(url + "?filter=id%20%3E", headers=admin), 400, "invalid_filter")
    _problem(client.get(_url(stored, "nope"), headers=admin), 404, "ref_not_found")
    # a dataset the caller cannot see: 404, with or without a token
    other = make_user(client, admin)
    _problem(client.get(url, headers=other), 404, "dataset_not_found")
    _problem(client.get(url), 404, "dataset_not_found")


def test_formula_neutralisation(client: Any, admin: dict[str, str], worker: Any) -> None:
    ds = make_dataset(client, admin)
    csv = b"=cmd,note\n=1+1,+SUM(A1)\n@x,-2\nplain,ok\n"
    job = import_csv(client, admin, ds["id"], csv, filename="f.csv")
    assert job["state"] == "succeeded", job
    url = f"/api/v1/datasets/{ds['id']}/refs/main/export"
    safe = client.get(url + "?format=csv", headers=admin).text
    # fields are quoted only where CSV needs it (RFC 4180)
    assert safe == "'=cmd,note\n'=1+1,'+SUM(A1)\n'@x,'-2\nplain,ok\n"
    raw = client.get(url + "?format=csv&raw=true", headers=admin).text
    assert raw == "=cmd,note\n=1+1,+SUM(A1)\n@x,-2\nplain,ok\n"
    wb = openpyxl.load_workbook(io.BytesIO(client.get(url + "?format=xlsx", headers=admin).content))
    assert list(wb.active.values) == [
        ("'=cmd", "note"),
        ("'=1+1", "'+SUM(A1)"),
        ("'@x", "'-2"),
        ("plain", "ok"),
    ]
    wb = openpyxl.load_workbook(
        io.BytesIO(client.get(url + "?format=xlsx&raw=true", headers=admin).content)
    )
    assert list(wb.active.values)[1] == ("=1+1", "+SUM(A1)")
    # not a spreadsheet format: values as they are
    lines = client.get(url + "?format=ndjson", headers=admin).text.splitlines()
    assert json.loads(lines[0]) == {"=cmd": "=1+1", "note": "+SUM(A1)"}


# --------------------------------------------------------------------------- caching


def test_etag_and_cache_policy(client: Any, admin: dict[str, str], stored: dict[str, Any]) -> None:
    pinned = _get(client, stored, admin, format="csv")
    etag = pinned.headers["etag"]
    assert etag.startswith(f'"{stored["commit"]}-')
    assert pinned.headers["cache-control"] == "private, max-age=31536000, immutable"
    r = client.get(_url(stored) + "?format=csv", headers={**admin, "If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    # other options, another tag; same options by another spelling, same tag
    assert _get(client, stored, admin, format="csv", columns="id").headers["etag"] != etag
    same = _get(client, stored, admin, format="CSV", compression="none", table="sales")
    assert same.headers["etag"] == etag
    # by branch: the same tag (same commit), but revalidated every time
    r = client.get(_url(stored, "main") + "?format=csv", headers=admin)
    assert r.headers["etag"] == etag and r.headers["cache-control"] == "private, no-cache"
    r = client.get(_url(stored, "main") + "?format=csv", headers={**admin, "If-None-Match": etag})
    assert r.status_code == 304


def test_parquet_ranges_and_head(
    client: Any, admin: dict[str, str], stored: dict[str, Any]
) -> None:
    url = _url(stored) + "?format=parquet&columns=id,name"
    head = client.head(url, headers=admin)
    assert head.status_code == 200 and head.headers["accept-ranges"] == "bytes"
    size = int(head.headers["content-length"])
    full = client.get(url, headers=admin).content
    assert len(full) == size
    r = client.get(url, headers={**admin, "Range": "bytes=0-3"})
    assert r.status_code == 206 and r.content == b"PAR1"
    assert r.headers["content-range"] == f"bytes 0-3/{size}"
    r = client.get(url, headers={**admin, "Range": "bytes=-8"})
    assert r.status_code == 206 and r.content == full[-8:] and r.content.endswith(b"PAR1")
    r = client.get(url, headers={**admin, "Range": f"bytes={size - 2}-"})
    assert r.status_code == 206 and r.content == full[-2:]
    r = client.get(url, headers={**admin, "Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{size}"
    r = client.head(url, headers={**admin, "Range": "bytes=4-9"})
    assert r.status_code == 206 and r.headers["content-length"] == "6"
    # If-Range with another tag: the whole file
    r = client.get(url, headers={**admin, "Range": "bytes=0-3", "If-Range": '"other"'})
    assert r.status_code == 200 and r.content == full


# --------------------------------------------------------------------------- signed links


def _link(client: Any, admin: dict[str, str], s: dict[str, Any], **body: Any) -> dict[str, Any]:
    r = client.post(_url(s, "main") + "-links", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_signed_links(client: Any, admin: dict[str, str], stored: dict[str, Any]) -> None:
    link = _link(client, admin, stored, format="csv", columns=["id", "name"], expires_in_seconds=60)
    assert f"/refs/{stored['commit']}/export?" in link["url"]  # pinned to the commit
    expires = dt.datetime.fromisoformat(link["expires_at"].replace("Z", "+00:00"))
    assert 50 < (expires - dt.datetime.now(UTC)).total_seconds() <= 61
    r = client.get(_path(link["url"]))  # no Authorization header
    assert r.status_code == 200, r.text
    assert r.text.startswith("id,name\n0,name 0\n")
    # altered: another column list, another expiry, another user, no signature
    for old, new in [
        ("columns=id%2Cname", "columns=id"),
        ("expires=", "expires=9"),
        ("sig=", "sig=A"),
    ]:
        _problem(client.get(_path(link["url"]).replace(old, new, 1)), 403, "bad_signature")
    _problem(client.get(_path(link["url"]) + "&format=parquet"), 403, "bad_signature")
    # expired
    past = _link(client, admin, stored, format="csv", expires_in_seconds=1)
    time.sleep(1.1)
    _problem(client.get(_path(past["url"])), 403, "link_expired")
    # unpinned: follows the branch
    live = _link(client, admin, stored, format="csv", pin=False)
    assert "/refs/main/export?" in live["url"]
    assert client.get(_path(live["url"])).status_code == 200
    # lifetime limits and bad options at creation
    r = client.post(
        _url(stored, "main") + "-links",
        json={"format": "csv", "expires_in_seconds": 10**9},
        headers=admin,
    )
    _problem(r, 422, "link_lifetime_too_long")
    r = client.post(_url(stored, "main") + "-links", json={"format": "pdf"}, headers=admin)
    _problem(r, 422, "unknown_export_format")
    r = client.post(_url(stored, "main") + "-links", json={"format": "csv"})
    assert r.status_code == 401


def test_signed_link_follows_the_signers_access(
    client: Any, admin: dict[str, str], worker: Any
) -> None:
    ds = make_dataset(client, admin)
    job = import_csv(client, admin, ds["id"], b"a\n1\n2\n", filename="t.csv")
    assert job["state"] == "succeeded"
    user = make_user(client, admin)
    name = user["X-Test-Username"]
    perm = f"/api/v1/datasets/{ds['id']}/permissions/{name}"
    assert client.put(perm, json={"role": "read"}, headers=admin).status_code == 200
    r = client.post(
        f"/api/v1/datasets/{ds['id']}/refs/main/export-links", json={"format": "csv"}, headers=user
    )
    assert r.status_code == 201, r.text
    url = _path(r.json()["url"])
    assert client.get(url).text == "a\n1\n2\n"
    assert client.delete(perm, headers=admin).status_code == 204
    _problem(client.get(url), 404, "dataset_not_found")


def test_key_rotation_voids_links(
    client: Any, admin: dict[str, str], stored: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.config import get_settings

    link = _link(client, admin, stored, format="csv", columns="id")
    assert client.get(_path(link["url"])).status_code == 200
    monkeypatch.setattr(get_settings(), "export_link_key", "rotated-" + uuid.uuid4().hex)
    _problem(client.get(_path(link["url"])), 403, "bad_signature")

"""Exports over real HTTP (uvicorn): Parquet read by polars straight from a
signed link, fetching only what the query needs; a streamed CSV export."""

from __future__ import annotations

import io
from typing import Any

import httpx
import polars as pl
import pytest

from tests.conftest import import_csv, make_dataset

ROWS = 20_000


@pytest.fixture(scope="module")
def table(http: httpx.Client, auth: dict[str, str]) -> dict[str, Any]:
    df = pl.DataFrame(
        {
            "id": range(ROWS),
            "group": [f"g{i % 7}" for i in range(ROWS)],
            "value": [i * 0.5 for i in range(ROWS)],
        }
    )
    ds = make_dataset(http, auth)
    job = import_csv(http, auth, ds["id"], df.write_csv().encode(), filename="points.csv")
    assert job["state"] == "succeeded", job
    return {"ds": ds, "df": df, "commit": job["commit_id"]}


def test_polars_scans_a_signed_parquet_link(
    http: httpx.Client, auth: dict[str, str], table: dict[str, Any], api_url: str
) -> None:
    ds = table["ds"]
    r = http.post(
        f"/api/v1/datasets/{ds['id']}/refs/main/export-links",
        json={"format": "parquet", "expires_in_seconds": 600},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    assert url.startswith(api_url) and "sig=" in url
    # no token: the link is the credential
    got = pl.scan_parquet(url).filter(pl.col("id") >= ROWS - 5).select("id", "value").collect()
    exp = table["df"].filter(pl.col("id") >= ROWS - 5).select("id", "value")
    assert got.equals(exp)
    # the whole file is a Parquet file of the table; its size is known by HEAD
    size = int(httpx.head(url).headers["content-length"])
    whole = httpx.get(url)
    assert whole.status_code == 200 and len(whole.content) == size
    assert pl.read_parquet(io.BytesIO(whole.content)).equals(table["df"])
    # a projection with a filter on the link's own filter and columns
    r = http.post(
        f"/api/v1/datasets/{ds['id']}/refs/main/export-links",
        json={"format": "parquet", "columns": ["id"], "filter": "group = 'g3' and id < 100"},
        headers=auth,
    )
    got = pl.scan_parquet(r.json()["url"]).collect()
    assert got["id"].to_list() == [i for i in range(100) if i % 7 == 3]
    # an altered link is refused
    bad = httpx.get(url.replace("format=parquet", "format=csv"))
    assert bad.status_code == 403 and bad.json()["code"] == "bad_signature"


def test_csv_streams_over_http(
    http: httpx.Client, auth: dict[str, str], table: dict[str, Any]
) -> None:
    ds = table["ds"]
    url = f"/api/v1/datasets/{ds['id']}/refs/{table['commit']}/export?format=csv&compression=gzip"
    with http.stream("GET", url, headers=auth) as r:
        assert r.status_code == 200
        assert "content-length" not in r.headers  # chunked: sent as it is made
        assert r.headers["cache-control"].endswith("immutable")
        body = r.read()
    import gzip

    assert pl.read_csv(gzip.decompress(body)).equals(table["df"])

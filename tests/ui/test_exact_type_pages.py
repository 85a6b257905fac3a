"""Pages over exact and nested types: the data grid shows decimals exactly
(right-aligned), lists and structs as JSON; the statistics page and the
compare page render; the statistics give decimals exact bounds."""

from __future__ import annotations

import io
from typing import Any

import pyarrow.parquet as pq

from tests.api.test_exact_types import _table
from tests.conftest import import_csv, make_dataset
from tests.ui.conftest import sign_in


def test_pages_and_statistics_over_exact_types(
    browser_client: Any, admin: dict[str, str], worker: Any
) -> None:
    c = browser_client
    ds = make_dataset(c, admin, primary_key=["id"])
    commits = []
    for bump in (0, 1):
        buf = io.BytesIO()
        pq.write_table(_table(bump), buf)
        job = import_csv(c, admin, ds["id"], buf.getvalue(), filename="p.parquet", mode="replace")
        assert job["state"] == "succeeded", job
        commits.append(job["commit_id"])
    stats = c.get(f"/api/v1/datasets/{ds['id']}/refs/main/stats", headers=admin)
    assert stats.status_code == 200, stats.text
    cols = {s["name"]: s for s in stats.json()["columns"]}
    assert cols["price"]["min"] == "9.56" and cols["price"]["max"] == "114.45"
    assert cols["price"]["quantiles"]["p50"] == "62.00"  # exact, from the sample's values
    assert abs(cols["price"]["mean"] - 61.9875) < 0.01 and len(cols["price"]["histogram"]) == 20
    assert cols["price"]["histogram"][0]["lo"] == "9.56"  # edges at the column's scale
    assert cols["price"]["null_count"] == 162  # k % 13 == 0 for k < 2100
    assert cols["at"]["min"] == "00:00:00" and cols["took"]["null_count"] == 300
    assert len(cols["at"]["histogram"]) == 20 and cols["at"]["quantiles"]["p50"] < "13:00:00"
    assert (
        cols["took"]["max"] == "PT34M59.000005S"
        and cols["took"]["histogram"][0]["lo"] == "PT1.000005S"
    )
    assert cols["tags"]["null_count"] == 0 and cols["meta"]["null_count"] == 700

    sign_in(c)
    home = c.get(f"/datasets/{ds['id']}")
    assert home.status_code == 200
    assert '<td class="num">9.56</td>' in home.text
    assert "[1, null]" in home.text and "{&#34;w&#34;: &#34;1.5&#34;" in home.text
    assert c.get(f"/datasets/{ds['id']}/stats").status_code == 200
    compare = c.get(f"/datasets/{ds['id']}/compare/{commits[0]}...{commits[1]}")
    assert compare.status_code == 200 and "9.55" in compare.text and "9.56" in compare.text

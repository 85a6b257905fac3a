"""The Download menu on the data and commit pages (issue 16): every format
of the table at the page's commit, with its columns and filter, through a
short-lived signed link; and a page with the link and the CLI and Python
snippets for the same export."""

from __future__ import annotations

import html
import io
import re
import uuid
from typing import Any

import polars as pl
from fastapi.testclient import TestClient

from tests.conftest import Worker, import_csv, login, make_dataset
from tests.ui.conftest import sign_in


def test_download_menu_exports_what_the_page_shows(
    browser_client: TestClient, client: Any, worker: Worker
) -> None:
    admin = login(client)
    ds = make_dataset(client, admin, name=f"dl-{uuid.uuid4().hex[:8]}")
    body = "id,name,score\n" + "".join(f"{i},n{i},{i % 7}\n" for i in range(50))
    job = import_csv(client, admin, ds["id"], body.encode(), filename="points.csv")
    c = browser_client
    sign_in(c)
    page = c.get(f"/datasets/{ds['id']}", params={"filter": "score = 3", "col": ["id", "score"]})
    assert page.status_code == 200 and "Download (filtered)" in page.text
    links = [html.unescape(h) for h in re.findall(r'href="([^"]*/download\?[^"]*)"', page.text)]
    assert len(links) == 7 and all(job["commit_id"] in h for h in links)
    csv_link = next(h for h in links if "format=csv" in h)
    r = c.get(csv_link, follow_redirects=False)
    assert r.status_code == 303 and "sig=" in r.headers["location"]
    got = c.get(r.headers["location"])  # the signed link: no cookie needed
    want = pl.read_csv(body.encode()).filter(pl.col("score") == 3).select("id", "score")
    assert pl.read_csv(io.BytesIO(got.content)).equals(want)
    parquet = next(h for h in links if "format=parquet" in h and "show=link" not in h)
    got = c.get(parquet)  # followed: the stored Parquet file
    assert pl.read_parquet(io.BytesIO(got.content)).equals(want)
    shown = c.get(next(h for h in links if "show=link" in h))
    assert shown.status_code == 200
    text = html.unescape(shown.text)
    assert f"dsa export {ds['name']}@{job['commit_id'][:12]} --table points" in text
    assert f'dsa.Client().read("{ds["name"]}", "{job["commit_id"]}", table="points"' in text
    assert 'columns=["id", "score"], filter="score = 3"' in text
    url = re.search(r'id="snippet-link"[^>]*>([^<]+)<', shown.text)
    assert url and pl.read_parquet(io.BytesIO(c.get(html.unescape(url.group(1))).content)).equals(
        want
    )
    commit_page = c.get(f"/datasets/{ds['id']}/commits/{job['commit_id']}")
    assert commit_page.status_code == 200 and "/download?" in commit_page.text


def test_a_visitor_downloads_only_what_they_may_read(
    browser_client: TestClient, client: Any, worker: Worker
) -> None:
    admin = login(client)
    ds = make_dataset(client, admin)
    import_csv(client, admin, ds["id"], b"a\n1\n")
    c = browser_client  # not signed in
    r = c.get(f"/datasets/{ds['id']}/download", params={"ref": "main", "format": "csv"})
    assert r.status_code == 404
    client.patch(f"/api/v1/datasets/{ds['id']}", json={"visibility": "public"}, headers=admin)
    r = c.get(
        f"/datasets/{ds['id']}/download",
        params={"ref": "main", "format": "csv"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and "/export?" in r.headers["location"]
    assert c.get(r.headers["location"]).text.strip().splitlines() == ["a", "1"]
    shown = c.get(f"/datasets/{ds['id']}/download", params={"ref": "main", "show": "link"})
    assert shown.status_code == 200 and "needs no sign-in" in shown.text

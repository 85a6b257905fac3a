"""The catalog (issue 17): tags and readmes on datasets, and full-text
search over names, descriptions, tags, readmes and column names, ranked,
with what matched, among the datasets the caller may read only."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.conftest import Worker, import_csv, make_dataset, make_user

WORD = f"zq{uuid.uuid4().hex[:6]}"  # a word no other test's dataset holds


@pytest.fixture(scope="module")
def catalog(client: Any, admin: dict[str, str], worker: Worker) -> dict[str, Any]:
    owner = make_user(client, admin)
    other = make_user(client, admin)
    named = make_dataset(client, owner, name=f"{WORD}-customers", tags=["crm", "gold"],
                         visibility="internal", description="Every customer we have")  # fmt: skip
    described = make_dataset(client, owner, name=f"orders-{uuid.uuid4().hex[:6]}",
                             description=f"Orders and their {WORD} totals", tags=["crm"],
                             visibility="public")  # fmt: skip
    readme = make_dataset(client, owner, name=f"notes-{uuid.uuid4().hex[:6]}",
                          readme=f"# Notes\n\nThe **{WORD}** archive, kept for audits.",
                          visibility="public")  # fmt: skip
    secret = make_dataset(client, owner, name=f"{WORD}-secret", tags=["crm", "hidden"],
                          description=f"{WORD} {WORD} {WORD}")  # fmt: skip
    columns = make_dataset(client, owner, name=f"events-{uuid.uuid4().hex[:6]}",
                           visibility="public")  # fmt: skip
    job = import_csv(client, owner, columns["id"], f"{WORD}_id,amount\n1,2\n".encode())
    assert job["state"] == "succeeded", job
    return {
        "owner": owner,
        "other": other,
        "named": named,
        "described": described,
        "readme": readme,
        "secret": secret,
        "columns": columns,
    }


def _search(client: Any, headers: dict[str, str] | None, **params: Any) -> dict[str, Any]:
    r = client.get("/api/v1/search", params={"facets": True, **params}, headers=headers or {})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_tags_and_readme_are_kept_and_changed(client: Any, catalog: dict[str, Any]) -> None:
    ds, owner = catalog["named"], catalog["owner"]
    got = client.get(f"/api/v1/datasets/{ds['id']}", headers=owner).json()
    assert got["tags"] == ["crm", "gold"] and got["readme"] == ""
    r = client.patch(f"/api/v1/datasets/{ds['id']}", headers=owner,
                     json={"tags": ["crm", "gold", "crm", "pii"], "readme": "# Hello"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == ["crm", "gold", "pii"] and r.json()["readme"] == "# Hello"
    bad = client.patch(f"/api/v1/datasets/{ds['id']}", headers=owner, json={"tags": ["<b>"]})
    assert bad.status_code == 422
    too_many = client.patch(
        f"/api/v1/datasets/{ds['id']}", headers=owner, json={"tags": [f"t{i}" for i in range(33)]}
    )
    assert too_many.status_code == 422


def test_search_ranks_names_above_prose_and_says_what_matched(
    client: Any, catalog: dict[str, Any]
) -> None:
    body = _search(client, catalog["owner"], q=WORD)
    names = [h["name"] for h in body["items"]]
    assert names[0] in (catalog["named"]["name"], catalog["secret"]["name"])
    assert catalog["described"]["name"] in names and catalog["readme"]["name"] in names
    assert names.index(catalog["named"]["name"]) < names.index(catalog["described"]["name"])
    by_name = {h["name"]: h for h in body["items"]}
    described = by_name[catalog["described"]["name"]]["matches"]
    prose = next(m for m in described if m["field"] == "description")
    (start, end), *_ = prose["highlights"]
    assert prose["text"][start:end].lower() == WORD
    readme = by_name[catalog["readme"]["name"]]["matches"]
    hit = next(m for m in readme if m["field"] == "readme")
    # the readme's words, not its Markdown ("# Notes … The **word** archive")
    assert "*" not in hit["text"] and "#" not in hit["text"], hit
    (start, end), *_ = hit["highlights"]
    assert hit["text"][start:end].lower() == WORD


def test_search_finds_column_names_once_the_worker_indexed_them(
    client: Any, catalog: dict[str, Any]
) -> None:
    deadline = time.monotonic() + 30
    while True:
        body = _search(client, None, q=f"{WORD}_id")
        hit = next((h for h in body["items"] if h["name"] == catalog["columns"]["name"]), None)
        if hit is not None:
            break
        assert time.monotonic() < deadline, "the column was never indexed"
        time.sleep(0.1)
    assert {"field": "column", "text": f"{WORD}_id", "highlights": None} in hit["matches"]


def test_prefixes_match_as_you_type(client: Any, catalog: dict[str, Any]) -> None:
    body = _search(client, catalog["owner"], q=WORD[:-2])
    assert catalog["named"]["name"] in [h["name"] for h in body["items"]]


def test_a_private_dataset_never_shows_to_strangers(client: Any, catalog: dict[str, Any]) -> None:
    secret = catalog["secret"]["name"]
    for who in (None, catalog["other"]):
        body = _search(client, who, q=WORD)
        names = [h["name"] for h in body["items"]]
        assert secret not in names
        assert body["total"] == len(names)
        assert "hidden" not in [f["value"] for f in body["facets"]["tags"]]
        crm = next(f for f in body["facets"]["tags"] if f["value"] == "crm")
        assert crm["count"] == (1 if who is None else 2)  # internal: signed-in users only
    mine = _search(client, catalog["owner"], q=WORD)
    assert secret in [h["name"] for h in mine["items"]]


def test_facets_filter_by_tag_visibility_and_owner(
    client: Any, admin: dict[str, str], catalog: dict[str, Any]
) -> None:
    owner = catalog["owner"]
    crm = _search(client, owner, q=WORD, tag="crm")
    assert {h["name"] for h in crm["items"]} == {
        catalog["named"]["name"],
        catalog["described"]["name"],
        catalog["secret"]["name"],
    }
    both = _search(client, owner, q=WORD, tag=["crm", "gold"])
    assert [h["name"] for h in both["items"]] == [catalog["named"]["name"]]
    public = _search(client, owner, q=WORD, visibility="public")
    assert all(h["visibility"] == "public" for h in public["items"]) and public["total"] >= 2
    by_owner = _search(client, admin, q=WORD, owner=owner["X-Test-Username"])
    assert by_owner["total"] == 5
    assert _search(client, admin, q=WORD, owner="nobody-at-all")["total"] == 0


def test_queries_are_words_not_syntax(client: Any, catalog: dict[str, Any]) -> None:
    for q in ["'", "a & | !", "(((", ":*", "\\", "<script>", "x" * 500, " "]:
        r = client.get("/api/v1/search", params={"q": q}, headers=catalog["owner"])
        assert r.status_code == 200, (q, r.text)
    assert client.get("/api/v1/search", params={"q": "x" * 501}).status_code == 422

"""The catalog: finding datasets by what they hold.

Datasets carry tags and a Markdown readme. PostgreSQL keeps a full-text
document per dataset (migration 0012: a trigger over its name, tags,
description, readme and the table and column names of its default branch's
head, with a GIN index); ``search`` ranks the datasets a caller may read by
it and says what matched, with the matched words marked. The table and
column names are kept by the worker (``index``, the task
``datasets.index``) after the default branch moves.

Readmes are rendered with markdown-it (CommonMark, raw HTML off) and then
sanitised with nh3 (ammonia): only an allow-list of tags and attributes
survives, links get ``rel="nofollow noopener noreferrer"``, and only http,
https and mailto URLs are kept.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import nh3
import psycopg
import structlog
from markdown_it import MarkdownIt

from core import db
from core.objects import get_commit, get_schema
from core.storage import get_store
from features.auth import service as auth_service
from features.auth.errors import UserNotFound
from features.auth.service import User
from features.refs import service as refs_service
from features.refs.errors import BranchNotFound

log = structlog.get_logger(__name__)
Q = db.Queries(__file__)
_WORD = re.compile(r"\w+")
_START, _STOP = "\x02", "\x03"
MAX_TERMS = 16  # words of a query used for prefix matching
MAX_COLUMNS = 2000  # column names a dataset's document holds
_md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4",
    "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "strong", "table", "tbody",
    "td", "th", "thead", "tr", "ul",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "th": {"align"},
    "td": {"align"},
}


def render_readme(markdown: str) -> str:
    """A readme as safe HTML: Markdown rendered (raw HTML escaped), then
    sanitised against an allow-list (nothing that runs, nothing that styles)."""
    html = _md.render(markdown)
    return nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="nofollow noopener noreferrer",
    )


_OPERATORS = re.compile(r'"|(^|\s)-\w|\sor\s', re.IGNORECASE)


def _prefix_query(q: str) -> str:
    """``q``'s words as a prefix query (``cust & amou`` → ``cust:* & amou:*``):
    words only, so nothing in it is tsquery syntax. None (empty) when ``q``
    uses web-search syntax (a phrase, ``-word``, ``or``): the prefix query,
    OR'ed in, would match what those exclude."""
    if _OPERATORS.search(q):
        return ""
    words = _WORD.findall(q.lower())[:MAX_TERMS]
    return " & ".join(f"{w}:*" for w in words)


def search(
    conn: psycopg.Connection[Any],
    user: User | None,
    *,
    q: str,
    tags: list[str] | None = None,
    visibility: str | None = None,
    owner: str | None = None,
    page: int = 1,
    per_page: int = 20,
    with_facets: bool = False,
) -> dict[str, Any]:
    """Datasets the caller may read matching ``q`` (all of them when empty),
    best first, each with what matched; with ``with_facets``, the tags,
    visibilities and owners of all the matches (a second query)."""
    q = q.strip()
    params = {
        "q": q,
        "prefix": _prefix_query(q),
        "user_id": user.id if user else None,
        "is_admin": bool(user and user.is_admin),
        "only": sorted(user.datasets) if user and user.datasets is not None else None,
        "tags": tags or None,
        "visibility": visibility,
        "owner_id": _user_id(conn, owner) if owner else None,
        "limit": per_page,
        "offset": (page - 1) * per_page,
    }
    facets: dict[str, list[dict[str, Any]]] | None = None
    with conn.transaction():
        # a scan of the table tests every dataset's document, while the GIN
        # index finds a rare word's datasets in a few pages; the default cost
        # model (random_page_cost 4, for disks) picks the scan for 10,000
        # datasets. This search costs pages as cached ones.
        conn.execute("SET LOCAL random_page_cost = 1.1")
        rows = conn.execute(Q.search, params).fetchall()
        if with_facets:
            facets = {"tags": [], "visibility": [], "owner": []}
            found = conn.execute(Q.search_facets, params).fetchall()
            owners = auth_service.usernames(
                conn, [uuid.UUID(f["value"]) for f in found if f["facet"] == "owner"]
            )
            for f in found:
                value = owners.get(uuid.UUID(f["value"])) if f["facet"] == "owner" else f["value"]
                if value is not None and len(facets[f["facet"]]) < 50:
                    facets[f["facet"]].append({"value": value, "count": f["n"]})
            facets["owner"].sort(key=lambda f: (-f["count"], f["value"]))
    total = rows[0]["total"] if rows else 0
    if not rows and page > 1:  # past the end: still say how many there are
        with conn.transaction():
            conn.execute("SET LOCAL random_page_cost = 1.1")
            probe = conn.execute(Q.search, {**params, "limit": 1, "offset": 0}).fetchone()
        total = probe["total"] if probe else 0
    names = auth_service.usernames(conn, list({r["created_by"] for r in rows if r["created_by"]}))
    return {
        "items": [_hit(r, names.get(r["created_by"])) for r in rows],
        "total": total,
        "page": page,
        "per_page": per_page,
        "facets": facets,
    }


def _user_id(conn: psycopg.Connection[Any], username: str) -> uuid.UUID:
    """The id of the user called ``username``; an id no dataset was made by
    when there is none (the owner filter then finds nothing)."""
    try:
        return auth_service.user_by_name(conn, username).id
    except UserNotFound:
        return uuid.UUID(int=0)


def _hit(row: dict[str, Any], owner: str | None) -> dict[str, Any]:
    matches: list[dict[str, Any]] = []
    if row["name_matched"]:
        matches.append({"field": "name", "text": row["name"]})
    for field in ("description", "readme"):
        if row[f"{field}_hit"]:
            matches.append(_marked(field, row[f"{field}_hit"]))
    for field, key in (("tags", "tag"), ("tables", "table"), ("columns", "column")):
        matches += [{"field": key, "text": v} for v in row[f"{field}_hit"]]
    return {
        "dataset_id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "tags": row["tags"],
        "visibility": row["visibility"],
        "owner": owner,
        "updated_at": row["updated_at"],
        "matches": matches,
        "score": round(float(row["score"]), 6),
    }


def _marked(field: str, headline: str) -> dict[str, Any]:
    """A headline as text and the spans of the words that matched."""
    text, marks, at = [], [], 0
    for i, part in enumerate(re.split(f"[{_START}{_STOP}]", headline)):
        if i % 2:
            marks.append([at, at + len(part)])
        text.append(part)
        at += len(part)
    return {"field": field, "text": "".join(text), "highlights": marks}


def index(dataset_id: uuid.UUID, commit_id: str) -> bool:
    """Keep the table and column names of the dataset's default branch in
    its search document, if the branch is at ``commit_id`` (the task
    ``datasets.index``, sent after a branch moves); whether it changed."""
    store = get_store()
    commit = get_commit(store, commit_id)
    tables = sorted(commit.tables)
    columns: list[str] = []
    for name in tables:
        for c in get_schema(store, commit.tables[name].schema).columns:
            if c.name not in columns and len(columns) < MAX_COLUMNS:
                columns.append(c.name)
    with db.transaction() as conn:
        ds = conn.execute(Q.lock_for_catalog, {"id": dataset_id}).fetchone()
        if ds is None:
            return False
        try:
            head = refs_service.get_branch(conn, dataset_id, ds["default_branch"])["commit_id"]
        except BranchNotFound:
            return False
        if head != commit_id:  # moved on since: its own task indexes it
            return False
        done = conn.execute(
            Q.set_catalog,
            {
                "dataset_id": dataset_id,
                "commit_id": commit_id,
                "tables": tables,
                "columns": columns,
            },
        )
        return done.rowcount > 0

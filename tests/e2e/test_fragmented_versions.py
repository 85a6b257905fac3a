"""A version made by re-uploads (thousands of short pieces from several
chunks, interleaved) exports exactly its rows in every format, read chunk
by chunk or from its read copy; the Parquet export's row groups have the
documented size whatever the layout; read copies are built when a version
is read whole and when a branch moves on from a copied version, verified
before use, and evicted past their budget (issue 11, decision 0016)."""

from __future__ import annotations

import io
import random
import time
import uuid
from typing import Any

import openpyxl
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
import pytest

from core import layouts as copies
from core.config import get_settings
from core.db import read
from core.objects import get_commit, get_manifest
from core.storage import get_store
from features.auth import service as auth_service
from features.data import query
from features.data import service as data_service
from features.datasets import service as datasets_service
from features.exports import formats, rows, service
from features.layouts import service as layouts_service
from tests.conftest import import_csv, make_dataset

ROWS = 20_000  # 20 chunks of 1,000 rows (DSA_CHUNK_ROWS in tests), row groups of 128
SCHEMA = {
    "id": pl.Int64,
    "name": pl.Utf8,
    "price": pl.Float64,
    "day": pl.Date,
    "at": pl.Datetime("us"),
    "flag": pl.Boolean,
}
FORMATS = ["csv", "tsv", "parquet", "xlsx", "ndjson", "arrow"]


def _first() -> pl.DataFrame:
    i = pl.int_range(0, ROWS, eager=True)
    return pl.DataFrame(
        {
            "id": i,
            "name": [None if k % 11 == 0 else f"name {k}" for k in range(ROWS)],
            "price": [k / 8 + 0.25 for k in range(ROWS)],
            "day": pl.date_range(
                pl.date(2001, 1, 1), pl.date(2001, 1, 1) + pl.duration(days=ROWS - 1), eager=True
            ),
            "at": [
                None if k % 17 == 0 else 1_600_000_000_000_000 + k * 1_003_000 for k in range(ROWS)
            ],
            "flag": [k % 3 == 0 for k in range(ROWS)],
        }
    ).with_columns(pl.col("at").cast(pl.Datetime("us")))


def _edit(df: pl.DataFrame, rnd: random.Random, version: int) -> pl.DataFrame:
    """5 % of rows updated, 2 % deleted, 2 % inserted, at random positions."""
    n = df.height
    gone = set(rnd.sample(range(n), n // 50))
    updated = set(rnd.sample(range(n), n // 20))
    names = df["name"].to_list()
    for i in updated:
        names[i] = f"v{version} {names[i]}"
    keep = [i for i in range(n) if i not in gone]
    df = df.with_columns(pl.Series("name", names, pl.Utf8))[keep]
    rows = df.rows()
    for k in range(n // 50):
        src = rows[rnd.randrange(len(rows))]
        rows.insert(rnd.randrange(len(rows) + 1), (10**6 * version + k, *src[1:]))
    return pl.DataFrame(rows, schema=SCHEMA, orient="row")


@pytest.fixture(scope="module")
def versions(client: Any, admin: dict[str, str], worker: Any) -> dict[str, Any]:
    ds = make_dataset(client, admin)
    rnd = random.Random(7)
    df = _first()
    commits, frames = [], []
    for v in range(4):
        if v:
            df = _edit(df, rnd, v)
        job = import_csv(client, admin, ds["id"], df.write_csv().encode(), filename="t.csv")
        assert job["state"] == "succeeded", job
        commits.append(job["commit_id"])
        frames.append(df)
    return {"ds": ds, "commits": commits, "frames": frames}


def _prepare(ds: dict[str, Any], commit: str, fmt: str) -> service.Export:
    with read() as conn:
        row = conn.execute("SELECT id FROM app_user WHERE username = 'admin'").fetchone()
        assert row is not None
        user = auth_service.user_by_id(conn, row["id"])
        dataset = datasets_service.require(conn, user, uuid.UUID(ds["id"]), "read")
        return service.prepare(
            conn,
            dataset,
            commit,
            table=None,
            format=fmt,
            columns=None,
            filter=None,
            compression=None,
        )


def _decode(fmt: str, data: bytes) -> pl.DataFrame:
    """An export read back by a reader other than the one that wrote it."""
    if fmt in ("csv", "tsv"):
        return pl.read_csv(data, separator="\t" if fmt == "tsv" else ",", schema=SCHEMA)
    if fmt == "parquet":
        return pl.from_arrow(pq.read_table(io.BytesIO(data)))  # type: ignore[return-value]
    if fmt == "arrow":
        return pl.from_arrow(ipc.open_stream(data).read_all())  # type: ignore[return-value]
    if fmt == "ndjson":
        return pl.read_ndjson(data, schema={**SCHEMA, "day": pl.Utf8, "at": pl.Utf8}).with_columns(
            pl.col("day").str.to_date(), pl.col("at").str.to_datetime(time_unit="us")
        )
    sheet = openpyxl.load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    rows = list(sheet.iter_rows(values_only=True))
    frame = pl.DataFrame(rows[1:], schema=list(rows[0]), orient="row", infer_schema_length=None)
    return frame.with_columns(pl.col("day").cast(pl.Date), pl.col("at").cast(pl.Datetime("us")))


def test_the_versions_are_fragmented(versions: dict[str, Any]) -> None:
    store = get_store()
    manifest = get_manifest(store, get_commit(store, versions["commits"][-1]).tables["t"].manifest)
    cols = manifest.columns
    assert len(cols.length) > 1000 and len(cols.chunks) > 3
    switches = int((cols.chunk[1:] != cols.chunk[:-1]).sum())
    assert switches > 1000  # the chunks' pieces interleave
    assert copies.fragmented(manifest)


def _stream(ex: service.Export, via: str, monkeypatch: pytest.MonkeyPatch) -> bytes:
    """The export's bytes read from the version's chunks or from its copy."""
    with monkeypatch.context() as m:
        if via == "chunks":
            m.setattr(get_settings(), "layout_cache_bytes", 0)
        else:
            assert rows.source(get_store(), ex).copy is not None
        return b"".join(service.stream(ex))


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_exports_exactly_the_rows(
    versions: dict[str, Any], monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """The same bytes from the chunks and from the read copy (Arrow: the same
    rows; its batches follow the reads), and they are the rows; Parquet row
    groups of the documented size."""
    monkeypatch.setattr(formats, "PARQUET_ROW_GROUP_ROWS", 4096)
    ds, commit, want = versions["ds"], versions["commits"][-1], versions["frames"][-1]
    _built(ds, commit)
    ex = _prepare(ds, commit, fmt)
    data = _stream(ex, "chunks", monkeypatch)
    other = _stream(ex, "read copy", monkeypatch)
    if fmt == "arrow":  # batches as read, and a null's value slot is undefined in Arrow
        assert ipc.open_stream(other).read_all().equals(ipc.open_stream(data).read_all())
    else:
        assert other == data
    got = _decode(fmt, data)
    if fmt == "xlsx":  # Excel keeps times as fractions of a day: whole milliseconds survive
        got, want = (f.with_columns(pl.col("at").dt.round("1ms")) for f in (got, want))
    assert got.schema == want.schema
    assert got.equals(want), fmt
    if fmt == "parquet":
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        assert sizes[:-1] == [4096] * (len(sizes) - 1) and 0 < sizes[-1] <= 4096


def _built(ds: dict[str, Any], commit: str, timeout: float = 60) -> copies.Copy:
    """Ask for the version's read copy as a whole read does; wait for the worker."""
    ex = _prepare(ds, commit, "csv")
    deadline = time.monotonic() + timeout
    while (copy := rows.source(get_store(), ex).copy) is None:
        assert time.monotonic() < deadline, "the read copy was not built"
        time.sleep(0.2)
    return copy


def _wait_built(manifest_id: str, timeout: float = 60) -> None:
    """Wait for the read copy the branch's move asked for to be built."""
    deadline = time.monotonic() + timeout  # asked for by a worker task after the move
    while (row := _row(manifest_id)) is None or row["state"] != "ready":
        assert time.monotonic() < deadline, f"no read copy was built (its row: {row})"
        time.sleep(0.2)


def _forget(manifest_id: str) -> None:
    """Delete a version's read copy and its record, as eviction does."""
    with read() as conn:
        row = conn.execute(
            "SELECT * FROM layout WHERE manifest_id = %s AND state = 'ready'", (manifest_id,)
        ).fetchone()
        if row is not None:
            layouts_service._delete(conn, get_store(), layouts_service._copy(row))


def _row(manifest_id: str) -> dict[str, Any] | None:
    with read() as conn:
        return conn.execute(  # type: ignore[no-any-return]
            "SELECT state, bytes FROM layout WHERE manifest_id = %s", (manifest_id,)
        ).fetchone()


def _manifest_id(commit: str) -> str:
    return get_commit(get_store(), commit).tables["t"].manifest


def test_the_same_rows_make_the_same_parquet_file(
    client: Any, admin: dict[str, str], versions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Freshly imported, the last version's rows export to the same Parquet
    bytes as the fragmented version's (read from its chunks)."""
    ds = make_dataset(client, admin)
    job = import_csv(
        client, admin, ds["id"], versions["frames"][-1].write_csv().encode(), filename="t.csv"
    )
    fresh = b"".join(service.stream(_prepare(ds, job["commit_id"], "parquet")))
    ex = _prepare(versions["ds"], versions["commits"][-1], "parquet")
    assert _stream(ex, "chunks", monkeypatch) == fresh


def test_a_branch_moving_on_from_a_copied_version_gets_a_copy(
    client: Any, admin: dict[str, str], versions: dict[str, Any]
) -> None:
    ds, last = versions["ds"], versions["commits"][-1]
    _built(ds, last)  # read whole: copied
    df = _edit(versions["frames"][-1], random.Random(99), 9)
    job = import_csv(client, admin, ds["id"], df.write_csv().encode(), filename="t.csv")
    assert job["state"] == "succeeded", job
    _wait_built(_manifest_id(job["commit_id"]))
    ex = _prepare(ds, job["commit_id"], "csv")
    assert rows.source(get_store(), ex).copy is not None  # nobody read it whole: it followed
    assert _decode("csv", b"".join(service.stream(ex))).equals(df)


def test_a_read_from_a_copy_never_decodes_the_versions_manifest(
    versions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy is found by the manifest's id: a 35M-row version's ~1.2M
    pieces (~50 MB decoded) are never read by a whole read of its copy."""
    ds, commit = versions["ds"], versions["commits"][1]
    _built(ds, commit)

    def decode(*args: Any) -> Any:
        raise AssertionError("the manifest was decoded")

    monkeypatch.setattr(rows, "get_manifest", decode)
    ex = _prepare(ds, commit, "csv")
    assert rows.source(get_store(), ex).copy is not None
    assert _decode("csv", b"".join(service.stream(ex))).equals(versions["frames"][1])


@pytest.mark.parametrize("damage", ["garbage", "another copy", "gone"])
def test_a_damaged_read_copy_is_never_read(versions: dict[str, Any], damage: str) -> None:
    ds, commit = versions["ds"], versions["commits"][1]
    mid = _manifest_id(commit)
    copy = _built(ds, commit)
    store = get_store()
    victim = copy.parts[len(copy.parts) // 2]
    if damage == "garbage":
        store.put(victim, b"PAR1 not really")
    elif damage == "another copy":
        other = _built(ds, versions["commits"][2])
        with store.local_path(other.parts[0]) as path:
            store.put_file(victim, path)
    else:
        store.delete(victim)
    copies._verified.pop(copy.prefix)  # as a process that never read it
    ex = _prepare(ds, commit, "csv")
    assert rows.source(store, ex).copy is None  # failed its check: read from the chunks
    assert not any(store.exists(k) for k in copy.parts)
    assert _decode("csv", b"".join(service.stream(ex))).equals(versions["frames"][1])
    row = _row(mid)
    assert row is not None and row["state"] in ("building", "ready")  # asked for again


def test_read_copies_past_the_budget_are_evicted(
    versions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ds, commit = versions["ds"], versions["commits"][2]
    copy = _built(ds, commit)
    monkeypatch.setattr(layouts_service, "EVICT_GRACE_S", 0)
    assert layouts_service.evict(0) >= 1
    assert _row(_manifest_id(commit)) is None
    assert not any(get_store().exists(k) for k in copy.parts)
    with monkeypatch.context() as m:
        m.setattr(get_settings(), "layout_cache_bytes", 0)  # no new copy meanwhile
        ex = _prepare(ds, commit, "arrow")
        assert rows.source(get_store(), ex).copy is None
        got = pl.from_arrow(ipc.open_stream(b"".join(service.stream(ex))).read_all())
    assert isinstance(got, pl.DataFrame) and got.equals(versions["frames"][2])


def test_a_copy_larger_than_the_whole_budget_is_not_built(
    client: Any, admin: dict[str, str], worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Built, it would evict every other copy, then itself, and be built again
    on the next read: a loop of whole-table writes. Its size is estimated
    from the chunks' footers first, and it is not built."""
    ds = make_dataset(client, admin)
    df = _edit(_first(), random.Random(5), 1)
    for frame in (_first(), df):
        job = import_csv(client, admin, ds["id"], frame.write_csv().encode(), filename="t.csv")
        assert job["state"] == "succeeded", job
    commit = job["commit_id"]
    mid = _manifest_id(commit)
    store = get_store()
    manifest = get_manifest(store, mid)
    assert copies.fragmented(manifest)
    _wait_built(mid)  # small: built when the branch moved; forgotten
    _forget(mid)
    with read() as conn:  # asked for, as a whole read asks (no worker told)
        conn.execute(
            "INSERT INTO layout (manifest_id, schema_id, row_count) VALUES (%s, %s, %s)",
            (mid, get_commit(store, commit).tables["t"].schema, manifest.row_count),
        )
    estimate = copies.estimated_bytes(store, manifest)
    monkeypatch.setattr(get_settings(), "layout_cache_bytes", estimate - 1)
    assert layouts_service.build(mid) is None
    row = _row(mid)
    assert row is not None and row["state"] == "building"  # asked for again once stale
    monkeypatch.setattr(get_settings(), "layout_cache_bytes", 64 * estimate)
    size = layouts_service.build(mid)
    assert size is not None and 0.5 * estimate < size < 2 * estimate  # the estimate holds
    row = _row(mid)
    assert row is not None and row["state"] == "ready"


def test_no_read_copies_when_the_budget_is_zero(
    versions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(get_settings(), "layout_cache_bytes", 0)
    ds, commit = versions["ds"], versions["commits"][3]
    with read() as conn:
        conn.execute("DELETE FROM layout WHERE manifest_id = %s", (_manifest_id(commit),))
    ex = _prepare(ds, commit, "csv")
    assert rows.source(get_store(), ex).copy is None and _row(_manifest_id(commit)) is None


def test_a_read_copy_is_the_rows_of_its_manifest(versions: dict[str, Any]) -> None:
    ds, commit = versions["ds"], versions["commits"][1]
    copy = _built(ds, commit)
    store = get_store()
    manifest = get_manifest(store, _manifest_id(commit))
    copies._verified.pop(copy.prefix)
    assert copies.verify(store, copy)
    assert copy.digest == copies.rows_digest(store, manifest)
    assert len(copy.parts) == -(-manifest.row_count // 1000)  # parts of DSA_CHUNK_ROWS rows
    parts = []
    for i, key in enumerate(copy.parts):
        with store.local_path(key) as path:
            kv = pq.ParquetFile(path).metadata.metadata
            parts.append(pq.read_table(path).drop_columns(["_row_hash"]))
        assert kv[b"dsa.manifest"] == manifest.id.encode() and kv[b"dsa.part"] == str(i).encode()
    got = pl.from_arrow(pa.concat_tables(parts))
    assert isinstance(got, pl.DataFrame) and got.equals(versions["frames"][1])


@pytest.mark.parametrize(
    "params",
    [
        {"offset": 12_345, "limit": 50},
        {"filter": "price > 1000 and name contains '7'", "limit": 100, "offset": 40},
        {"sort": "-price,id", "filter": "flag = true", "limit": 30, "offset": 500},
    ],
    ids=["page", "filtered", "sorted"],
)
def test_pages_read_the_same_rows_from_a_read_copy(
    client: Any,
    admin: dict[str, str],
    versions: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    params: dict[str, Any],
) -> None:
    ds, commit = versions["ds"], versions["commits"][-1]
    url = f"/api/v1/datasets/{ds['id']}/refs/{commit}/data"
    _built(ds, commit)
    used: list[int] = []  # pieces of what each page read from
    source = data_service.source

    def spy(conn: Any, entry: Any) -> Any:
        got = source(conn, entry)
        used.append(len(got[0].columns.length))
        return got

    monkeypatch.setattr(data_service, "source", spy)
    query.clear_cache()
    copied = client.get(url, params=params, headers=admin).json()
    monkeypatch.setattr(get_settings(), "layout_cache_bytes", 0)  # read from the chunks
    query.clear_cache()
    chunks = client.get(url, params=params, headers=admin).json()
    assert used[0] == 20 and used[1] > 1000  # the copy's parts, then the version's pieces
    assert copied["rows"] and copied == chunks
    want = versions["frames"][-1]
    if "filter" not in params:
        assert [r[0] for r in chunks["rows"]] == want["id"][12_345 : 12_345 + 50].to_list()


def test_a_compare_shows_the_same_changes_read_from_read_copies(
    client: Any, admin: dict[str, str], versions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of changes reads the rows it shows from a side's read copy when
    that decodes fewer row groups (one or two of the copy, not one in each
    chunk the rows lie in); the changes are the same as read from the chunks."""
    from core import chunks as chunk_store
    from features.compare import service as compare_service

    ds, (_, _, base, head) = versions["ds"], versions["commits"]
    for commit in (base, head):
        _built(ds, commit)
    read: list[str] = []
    take = chunk_store.take_rows

    def spy(store: Any, cid: str, *args: Any) -> Any:
        read.append(args[-1](cid) if len(args) > 2 else cid)
        return take(store, cid, *args)

    monkeypatch.setattr(chunk_store, "take_rows", spy)
    monkeypatch.setattr("features.compare.rows.take_rows", spy)
    url = f"/api/v1/datasets/{ds['id']}/compare/{base}...{head}"
    pages = []
    budgets = (get_settings().layout_cache_bytes, 0)
    for budget in budgets:  # from the copies, then the chunks
        monkeypatch.setattr(get_settings(), "layout_cache_bytes", budget)
        compare_service._diffs.clear()
        read.clear()
        r = client.get(url, params={"offset": 300, "limit": 200}, headers=admin)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        from_copies = {k for k in read if k.startswith("layouts/")}
        # with copies, base's rows (in many chunks) come from its copy; head's
        # changed rows lie together in its upload's chunk, read from there
        assert read and bool(from_copies) == bool(budget), read
    copied, chunked = pages
    assert copied["changes"] and copied == chunked
    assert {c["op"] for c in copied["changes"]} == {"add", "remove", "modify"}

    # parts of a copy this process has checked go missing (its first part
    # stays, which is all a checked copy's later reads look at): the page
    # is read from the chunks instead, and the copy is checked again, failed,
    # deleted and asked for again by the next read
    monkeypatch.setattr(get_settings(), "layout_cache_bytes", budgets[0])
    copy = _built(ds, base)
    for key in copy.parts[1:]:
        get_store().delete(key)
    compare_service._diffs.clear()
    r = client.get(url, params={"offset": 300, "limit": 200}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == chunked
    ex = _prepare(ds, base, "csv")
    assert rows.source(get_store(), ex).copy is None  # checked again: failed
    assert not get_store().exists(copy.parts[0])


def test_a_small_fragmented_version_gets_a_copy_when_its_branch_moves(
    client: Any, admin: dict[str, str], worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody has read the table whole: a re-upload that leaves a fragmented
    version whose copy is small gets one built straight away; one past
    DSA_LAYOUT_EAGER_BYTES waits to be asked for."""
    ds = make_dataset(client, admin)
    jobs = []
    for frame in (_first(), _edit(_first(), random.Random(3), 1)):
        job = import_csv(client, admin, ds["id"], frame.write_csv().encode(), filename="t.csv")
        assert job["state"] == "succeeded", job
        jobs.append(job)
    old, new = (j["commit_id"] for j in jobs)
    mid = _manifest_id(new)
    assert copies.fragmented(get_manifest(get_store(), mid))
    _wait_built(mid)  # nobody read it
    _forget(mid)  # then the branch moves again with a smaller budget
    estimate = copies.estimated_bytes(get_store(), get_manifest(get_store(), mid))
    monkeypatch.setattr(get_settings(), "layout_eager_bytes", estimate - 1)
    layouts_service.follow_move(old, new)
    assert _row(mid) is None  # too large to build unasked
    monkeypatch.setattr(get_settings(), "layout_eager_bytes", estimate)
    with monkeypatch.context() as m:
        m.setattr(layouts_service, "_enqueue", lambda manifest_id: None)  # no worker told
        layouts_service.follow_move(old, new)
    row = _row(mid)
    assert row is not None and row["state"] == "building"


def test_a_page_checks_only_the_parts_it_reads(versions: dict[str, Any]) -> None:
    """``verify_parts``: a part is whole when present, naming its manifest
    and place, with the rows its place says; another part's file, garbage,
    a missing part or a number past the last fail, never raise."""
    ds, commit = versions["ds"], versions["commits"][2]
    copy = _built(ds, commit)
    store = get_store()
    copies.forget_check(copy)
    assert copies.verify_parts(store, copy, [0, len(copy.parts) - 1])
    assert not copies.verify_parts(store, copy, [len(copy.parts)])
    victim = 1
    with store.local_path(copy.parts[0]) as path:
        store.put_file(copy.parts[victim], path)  # part 0's file in part 1's place
    copies.forget_check(copy)
    assert copies.verify_parts(store, copy, [0])  # the parts a page reads, only
    assert not copies.verify_parts(store, copy, [victim])
    store.put(copy.parts[victim], b"PAR1 not really")
    copies.forget_check(copy)
    assert not copies.verify_parts(store, copy, [victim])
    store.delete(copy.parts[victim])
    assert not copies.verify_parts(store, copy, [victim])
    assert not copies.verify(store, copy)
    _forget(_manifest_id(commit))


def test_copies_of_versions_no_ref_holds_any_more_are_evicted(
    client: Any, admin: dict[str, str], worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copies follow the heads: once the branch has moved on from a
    version (and no tag holds it), its copy goes when unread for the grace
    period, whatever the budget; the head's and a tagged version's stay."""
    ds = make_dataset(client, admin)
    rnd = random.Random(11)
    df, commits = _first(), []
    for v in range(4):
        if v:
            df = _edit(df, rnd, v)
        job = import_csv(client, admin, ds["id"], df.write_csv().encode(), filename="t.csv")
        assert job["state"] == "succeeded", job
        commits.append(job["commit_id"])
    for commit in commits[1:]:
        _wait_built(_manifest_id(commit))  # small: each built when main moved to it
    r = client.post(
        f"/api/v1/datasets/{ds['id']}/tags",
        json={"name": "kept", "from": commits[2]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    monkeypatch.setattr(layouts_service, "EVICT_GRACE_S", 0)
    monkeypatch.setattr(get_settings(), "layout_cache_bytes", 1 << 40)  # the budget is no reason
    assert layouts_service.sweep() >= 1
    assert _row(_manifest_id(commits[1])) is None  # main moved on; nothing holds it
    for held in commits[2:]:  # the tag's, and main's head
        row = _row(_manifest_id(held))
        assert row is not None and row["state"] == "ready"


def test_a_compare_summary_readies_the_copies_its_first_page_reads(
    client: Any, admin: dict[str, str], versions: dict[str, Any]
) -> None:
    """A summary (``limit=0``) looks up and checks the read copy its first
    page will read from, so the page a client asks for next finds it
    remembered, without a query or a footer read of its own."""
    from features.compare import service as compare_service

    ds, (_, _, base, head) = versions["ds"], versions["commits"]
    for commit in (base, head):
        _built(ds, commit)
    base_manifest = _manifest_id(base)
    layouts_service._seen.pop(base_manifest)
    compare_service._diffs.clear()
    url = f"/api/v1/datasets/{ds['id']}/compare/{base}...{head}"
    r = client.get(url, params={"limit": 0}, headers=admin)
    assert r.status_code == 200 and r.json()["changes"] == [], r.text
    assert layouts_service._seen.get(base_manifest) is not None  # ready for the page

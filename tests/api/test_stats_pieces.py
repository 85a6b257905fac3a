"""Statistics merged by piece, end to end (issue 17, "reused for pieces
shared with the parent"): an import keeps a state beside every chunk it
writes; a version whose pieces are whole chunks merges those states and
reads no row; one that cuts a chunk reads only the cut pieces' rows; the
figures are the rows' figures either way."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import polars as pl
import pytest

from tests.conftest import Worker, import_csv, make_dataset

ROWS = 150_000  # more than the sample (100,000 rows): merged, not read in full


def _frame(rows: int, offset: int = 0) -> pl.DataFrame:
    cities = pl.Series(["Oslo", "Lima", "Rome", "Kyoto"])
    return pl.DataFrame({"id": pl.int_range(offset, offset + rows, eager=True)}).with_columns(
        city=pl.col("id").mod(4).replace_strict(range(4), cities),
        price=(pl.col("id") * 7919 % 1000) * 0.25,
        day=pl.lit(dt.date(2020, 1, 1)) + pl.duration(days=pl.col("id") * 31 % 365),
    )


def _csv(frame: pl.DataFrame) -> bytes:
    return frame.write_csv().encode()


@pytest.fixture(scope="module")
def versions(client: Any, admin: dict[str, str], worker: Worker) -> dict[str, Any]:
    base = _frame(ROWS)
    appended = pl.concat([base, _frame(3_000, offset=ROWS)])
    edited = appended.with_columns(
        pl.when(pl.col("id") == 70_000).then(None).otherwise(pl.col("price")).alias("price")
    )
    ds = make_dataset(client, admin, name=f"pieces-{uuid.uuid4().hex[:8]}")
    out: dict[str, Any] = {"ds": ds}
    for name, frame in (("base", base), ("appended", appended), ("edited", edited)):
        job = import_csv(client, admin, ds["id"], _csv(frame), filename="t.csv", table="t")
        assert job["state"] == "succeeded", job
        out[name] = (job["commit_id"], frame)
    return out


def _entry(commit_id: str) -> Any:
    from core.objects import get_commit
    from core.storage import get_store

    return get_commit(get_store(), commit_id).tables["t"]


def _computed(entry: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[dict[str, Any], int]:
    """The version's statistics computed here, and the rows read to do so."""
    from core import db
    from core.storage import get_store
    from features.stats import pieces
    from features.stats import service as stats_service

    read = [0]
    real = pieces._windows

    def counting(*a: Any, **kw: Any) -> Any:
        for t in real(*a, **kw):
            read[0] += t.num_rows
            yield t

    monkeypatch.setattr(pieces, "_windows", counting)
    with db.read() as conn:
        return stats_service.compute(conn, get_store(), entry), read[0]


def _check(stats: dict[str, Any], frame: pl.DataFrame) -> None:
    """The figures that are exact whatever the path, against polars."""
    cols = {c["name"]: c for c in stats["columns"]}
    assert stats["row_count"] == frame.height
    for name in frame.columns:
        s = frame.get_column(name)
        assert cols[name]["null_count"] == s.null_count(), name
        v = s.drop_nulls()
        got_min, got_max = cols[name]["min"], cols[name]["max"]
        if name == "day":
            got_min, got_max = dt.date.fromisoformat(got_min), dt.date.fromisoformat(got_max)
        assert (got_min, got_max) == (v.min(), v.max()), name
    for name in ("id", "price"):
        assert cols[name]["mean"] == pytest.approx(frame[name].mean())
        assert cols[name]["stddev"] == pytest.approx(frame[name].std())
    ids = frame.height
    assert cols["id"]["distinct_approx"] is True
    assert abs(cols["id"]["distinct_count"] - ids) / ids < 0.05
    assert cols["city"]["distinct_count"] == 4 and cols["city"]["distinct_approx"] is False
    want = dict(frame["city"].value_counts().iter_rows())
    assert {t["value"]: t["count"] for t in cols["city"]["top_values"]} == want
    assert cols["price"]["distinct_count"] == frame["price"].drop_nulls().n_unique()
    assert sum(b["count"] for b in cols["price"]["histogram"]) == frame["price"].count()
    # the tests' chunks (1,000 rows) keep every row: the merge cuts the sample at 100,000
    assert abs(stats["sample_rows"] - 100_000) < 2_000


def test_an_import_keeps_a_state_beside_every_chunk_it_writes(versions: dict[str, Any]) -> None:
    from core.objects import get_manifest
    from core.storage import get_store
    from features.stats import pieces

    store = get_store()
    for name in ("base", "appended", "edited"):
        manifest = get_manifest(store, _entry(versions[name][0]).manifest)
        for cid in {p.chunk for p in manifest.pieces}:
            assert store.exists(pieces.state_key(cid)), (name, cid)


def test_a_version_of_whole_chunks_merges_their_states_and_reads_no_row(
    versions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("base", "appended"):
        commit, frame = versions[name]
        stats, read = _computed(_entry(commit), monkeypatch)
        assert read == 0, name
        _check(stats, frame)


def test_a_version_that_cuts_a_chunk_reads_only_the_cut_pieces(
    versions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.objects import get_manifest
    from core.storage import get_store

    commit, frame = versions["edited"]
    entry = _entry(commit)
    pieces = get_manifest(get_store(), entry.manifest).pieces
    assert len(pieces) > 3  # the edited row's chunk is cut around it
    stats, read = _computed(entry, monkeypatch)
    assert 0 < read <= 131_072 + 1, read
    _check(stats, frame)


def test_a_missing_state_is_made_again_and_kept(
    versions: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chunk written before states were (or whose state was lost or
    damaged) gets one at the first need: its rows are read once, then never
    again."""
    from core.objects import get_manifest
    from core.storage import get_store
    from features.stats import pieces

    store = get_store()
    commit, frame = versions["base"]
    entry = _entry(commit)
    first = get_manifest(store, entry.manifest).pieces[0]
    store.delete(pieces.state_key(first.chunk))
    stats, read = _computed(entry, monkeypatch)
    assert read == first.length
    assert store.exists(pieces.state_key(first.chunk))
    _check(stats, frame)
    assert _computed(entry, monkeypatch)[1] == 0
    store.put(pieces.state_key(first.chunk), b"DSAS\xff\xff\x00\x00 damaged")
    stats, read = _computed(entry, monkeypatch)
    assert read == first.length  # a damaged state is made again, never a 500
    _check(stats, frame)


def test_the_api_serves_the_merged_statistics(
    client: Any, admin: dict[str, str], versions: dict[str, Any]
) -> None:
    ds = versions["ds"]["id"]
    commit, frame = versions["appended"]
    r = client.get(f"/api/v1/datasets/{ds}/refs/{commit}/stats?table=t", headers=admin)
    assert r.status_code == 200, r.text
    _check(r.json(), frame)

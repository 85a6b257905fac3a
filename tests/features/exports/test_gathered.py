"""A fragmented version's CSV windows gathered by polars (``gathered.frames``)
hold exactly the rows ``core.scan`` reads, in the same order and types,
whatever the pieces: few-row pieces of several chunks, pieces of one chunk
from all over it (read by ``core.scan``), filtered and projected."""

from __future__ import annotations

import io
import random
import uuid
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from core.chunks import read_rows
from core.config import get_settings
from core.db import read
from core.objects import Manifest, get_commit, get_manifest
from core.scan import Window
from core.storage import get_store
from features.auth import service as auth_service
from features.datasets import service as datasets_service
from features.exports import gathered, rows, service
from features.exports.spec import Export
from tests.conftest import import_csv, make_dataset
from tests.features.exports.test_service import ROWS, _table


@pytest.fixture(scope="module")
def stored(client: Any, admin: dict[str, str], worker: Any) -> dict[str, Any]:
    ds = make_dataset(client, admin)
    buf = io.BytesIO()
    pq.write_table(_table(), buf)
    job = import_csv(client, admin, ds["id"], buf.getvalue(), filename="t.parquet")
    assert job["state"] == "succeeded", job
    return {"ds": ds, "commit": job["commit_id"]}


def _export(stored: dict[str, Any], **options: Any) -> Export:
    with read() as conn:
        row = conn.execute("SELECT id FROM app_user WHERE username = 'admin'").fetchone()
        assert row is not None
        user = auth_service.user_by_id(conn, row["id"])
        dataset = datasets_service.require(conn, user, uuid.UUID(stored["ds"]["id"]), "read")
        return service.prepare(
            conn,
            dataset,
            stored["commit"],
            table=None,
            format="csv",
            columns=options.get("columns"),
            filter=options.get("filter"),
            compression=None,
            raw=False,
        )


def _fragmented(stored: dict[str, Any], layout: str) -> Manifest:
    """The stored table's rows cut into pieces of 1–300 rows, put in a new
    order: ``edits`` keeps the order but takes every 7th piece from
    elsewhere (a re-upload's changed rows); ``shuffled`` shuffles them all."""
    store = get_store()
    entry = next(iter(get_commit(store, stored["commit"]).tables.values()))
    one = get_manifest(store, entry.manifest)
    cols = one.columns
    rng = random.Random(7)
    chunk, start, length = [], [], []
    for k in range(len(cols.chunks)):
        at, end = int(cols.start[k]), int(cols.start[k] + cols.length[k])
        while at < end:
            n = min(rng.randint(1, 300), end - at)
            chunk.append(int(cols.chunk[k]))
            start.append(at)
            length.append(n)
            at += n
    order = list(range(len(chunk)))
    if layout == "shuffled":
        rng.shuffle(order)
    else:
        for i in range(0, len(order) - 7, 7):
            j = rng.randrange(len(order))
            order[i], order[j] = order[j], order[i]
    pick = np.asarray(order)
    return Manifest.from_columns(
        cols.chunks, np.asarray(chunk)[pick], np.asarray(start)[pick], np.asarray(length)[pick]
    )


@pytest.mark.parametrize("layout", ["edits", "shuffled"])
@pytest.mark.parametrize(
    "options",
    [{}, {"columns": ["at_tz", "name", "blob"], "filter": "name contains '7' and price > 100"}],
    ids=["all", "filter-columns"],
)
@pytest.mark.parametrize("max_chunks", [16, 1], ids=["gathered", "few-chunks"])
@pytest.mark.parametrize("small_windows", [False, True], ids=["windows", "small-windows"])
def test_gathered_windows_are_the_scans_rows(
    stored: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    layout: str,
    options: dict[str, Any],
    max_chunks: int,
    small_windows: bool,
) -> None:
    monkeypatch.setattr(gathered, "MAX_CHUNKS", max_chunks)
    if small_windows:
        monkeypatch.setattr(get_settings(), "export_batch_rows", 2048)  # 15 windows
    calls = []
    real = gathered._gathered
    monkeypatch.setattr(gathered, "_gathered", lambda *a: calls.append(1) or real(*a))
    manifest = _fragmented(stored, layout)
    ex = _export(stored, **options)
    src = rows.Source(manifest, rows.source(get_store(), ex).key)
    assert manifest.row_count == ROWS
    got = list(gathered.frames(get_store(), ex, src, offset=0, limit=ROWS))
    scanned = list(rows.windows(get_store(), ex, src))
    assert [(w.lo, w.hi) for w, _ in got] == [(w.lo, w.hi) for w, _ in scanned]
    joined = pl.concat([f for _, f in got])
    expected = pl.concat([pl.from_arrow(t) for _, t in scanned])  # type: ignore[misc]
    assert joined.schema == expected.schema
    assert joined.equals(expected)
    # gathered where the stretches stay near the window's rows, else scanned
    share = len(calls) / len(got)
    if not small_windows:  # (small windows of a shuffled table: a piece a chunk, gathered)
        assert share > 0.5 if layout == "edits" and max_chunks > 1 else share < 0.5, share
    if not options:  # the ids are the stored rows' numbers: the pieces' rows in order
        cols = manifest.columns
        base = [_first_id(cid) for cid in cols.chunks]
        want = np.concatenate(
            [
                np.arange(base[c] + s, base[c] + s + n)
                for c, s, n in zip(cols.chunk, cols.start, cols.length, strict=True)
            ]
        )
        assert joined["id"].to_numpy().tolist() == want.tolist()


def _first_id(cid: str) -> int:
    """The id of a chunk's first row (the stored rows' ids are their numbers)."""
    return int(read_rows(get_store(), cid, 0, 1, ("id",)).column(0)[0].as_py())


def test_stretches_far_larger_than_the_window_are_left_to_the_scan() -> None:
    """Pieces of one chunk from its first and last rows: the stretch between
    them would hold ~5,000 times the window's rows, so none is read by polars."""
    w = Window(
        0,
        20,
        np.array([0, 1, 0]),
        np.array([0, 5, 100_000]),
        np.array([10, 5, 5]),
    )
    assert gathered._stretches(w, 128) is None
    near = Window(0, 20, np.array([0, 1, 0]), np.array([0, 5, 10]), np.array([10, 5, 5]))
    assert gathered._stretches(near, 128) == [(0, 0, 15), (1, 5, 10)]

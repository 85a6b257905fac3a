"""The line scan (``lines``) maps its file a window at a time, and a scan
that cannot run costs speed, never the import (issue 19: a 14 GB file
mapped whole needed more address space than the import may use, and the
first import of a 100M-row table failed at its end)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from features.imports import lines
from tests.conftest import import_csv, make_dataset
from tests.features.imports.test_concurrent_writers import _queue, _run, ctx  # noqa: F401

DIALECT = {"compression": None, "delimiter": ","}


def _csv(tmp_path: Path, rows: int) -> Path:
    path = tmp_path / "t.csv"
    body = [
        f'{i},"text {i}\nover two lines",{i * 0.5}' if i % 7 == 0 else f"{i},t{i},{i}"
        for i in range(rows)
    ]
    path.write_bytes(b"\xef\xbb\xbf" + ("id,t,x\n" + "\n".join(body) + "\n").encode())
    return path


def test_the_scan_by_windows_finds_the_lines_one_window_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _csv(tmp_path, 40_000)

    def seen(scan: lines.Scan) -> tuple[bytes, list[list[int]]]:
        assert scan.spans is not None
        return scan.hashes.all(), scan.spans.words(0, scan.rows, "<i8").tolist()

    with lines.scanned(path, DIALECT, tmp_path, 10**6) as whole:
        assert whole is not None
        expected = seen(whole)
    monkeypatch.setattr(lines, "SCAN_WINDOW", 5000)  # ~100 windows, lines cut at their ends
    with lines.scanned(path, DIALECT, tmp_path, 10**6) as scan:
        assert scan is not None and scan.rows == 40_001
        assert seen(scan) == expected
        data = path.read_bytes()
        for start, end in [expected[1][i] for i in (0, 1, 7, 39_999, 40_000)]:
            assert scan.buf[start:end] == data[start:end]
        start, end = expected[1][8]
        assert scan.buf[start:end].startswith(b'7,"text 7\n')


def test_changed_lines_are_found_in_the_spans_file_block_by_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _csv(tmp_path, 40_000)
    monkeypatch.setattr(lines, "BLOCK", 16 * 1000)  # 41 blocks of places
    with lines.scanned(path, DIALECT, tmp_path, 10**6) as scan:
        assert scan is not None and scan.spans is not None
        every = scan.spans.words(0, scan.rows, "<i8").tolist()
        changed = np.array([0, 1, 999, 1000, 1001, 17_500, 39_999, 40_000])
        assert list(lines._places(scan.spans, changed)) == [every[i] for i in changed]
        assert list(lines._places(scan.spans, np.array([], np.int64))) == []


def test_a_scan_keeps_its_hashes_in_the_work_dir_and_drops_its_places(tmp_path: Path) -> None:
    path = _csv(tmp_path, 1000)
    work = tmp_path / "work"
    with lines.scanned(path, DIALECT, work, 10**6) as scan:
        assert scan is not None and scan.spans is not None
        assert scan.hashes.path.stat().st_size == 16 * 1001
        spans = scan.spans.path
        assert spans.exists()
    assert not spans.exists() and scan.hashes.path.exists()
    with lines.scanned(path, DIALECT, work, 10) as too_long:
        assert too_long is None
    assert sorted(p.name for p in work.iterdir()) == [scan.hashes.path.name]


def test_a_line_scan_that_fails_costs_speed_not_the_import(
    ctx: dict[str, Any],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    ds = make_dataset(ctx["c"], ctx["h"])
    first = b"id,v\n" + b"".join(b"%d,%d\n" % (i, i) for i in range(50))
    job = import_csv(ctx["c"], ctx["h"], ds["id"], first, filename="t.csv")
    assert job["state"] == "succeeded"

    def no_memory(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(lines, "_scan", no_memory)
    edited = first.replace(b"7,7\n", b"7,70\n")
    out = _run(ctx, _queue(ctx, monkeypatch, tmp_path, ds, edited), tmp_path)
    assert out["state"] == "succeeded", out.get("error")
    assert "parsed_rows" not in out["result"]  # every row read, nothing lost
    rows = (
        ctx["c"]
        .get(f"/api/v1/datasets/{ds['id']}/refs/main/data", params={"limit": 10}, headers=ctx["h"])
        .json()["rows"]
    )
    assert rows[7] == [7, 70]


def test_an_index_streams_back_and_one_too_long_or_altered_is_refused(tmp_path: Path) -> None:
    from core.objects import TableEntry
    from core.storage import get_store

    store = get_store()
    data = tmp_path / "hashes"
    data.write_bytes(bytes(range(256)) * 10)  # 160 records
    entry = TableEntry("a" * 64, "b" * 64, 160)
    index = lines.LineIndex(("a" * 64, "b" * 64), {"delimiter": ","}, lines.Records(data, 0, 160))
    lines.save("ds", "main", "t", index)
    work = tmp_path / "work"
    got = lines.load("ds", "main", "t", entry, work)
    assert got is not None and got.hashes.all() == data.read_bytes()
    assert got.fingerprint == {"delimiter": ","} and got.table == index.table
    key = lines.index_key("ds", "main", "t")
    raw = store.get(key)
    for bad in (raw + b"\0" * 16, raw[:-16], raw[:-1] + bytes([raw[-1] ^ 1])):
        store.put(key, bad)
        assert lines.load("ds", "main", "t", entry, work) is None
    store.put(key, raw)
    assert lines.load("ds", "main", "t", TableEntry("a" * 64, "b" * 64, 161), work) is None
    assert [p.name for p in work.iterdir()] == [got.hashes.path.name]

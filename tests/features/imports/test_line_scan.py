"""The line scan (``lines``) maps its file a window at a time, and a scan
that cannot run costs speed, never the import (issue 19: a 14 GB file
mapped whole needed more address space than the import may use, and the
first import of a 100M-row table failed at its end)."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

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
    with lines.scanned(path, DIALECT, tmp_path, 10**6) as whole:
        assert whole is not None
        expected = (whole.hashes, whole.spans.tolist())
    monkeypatch.setattr(lines, "SCAN_WINDOW", 5000)  # ~100 windows, lines cut at their ends
    with lines.scanned(path, DIALECT, tmp_path, 10**6) as scan:
        assert scan is not None
        assert (scan.hashes, scan.spans.tolist()) == expected
        data = path.read_bytes()
        for start, end in scan.spans[[0, 1, 7, 39_999, 40_000]].tolist():
            assert scan.buf[start:end] == data[start:end]
        assert scan.buf[int(scan.spans[8, 0]) : int(scan.spans[8, 1])].startswith(b'7,"text 7\n')


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

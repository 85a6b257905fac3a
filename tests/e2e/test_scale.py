"""A 10M-row table through a real stack, with memory bounded (issue 19).

Marked slow (`make test-slow`; ~1.5 GB of CSV and minutes): ``dsa up`` with
its default settings, the seeded 12-column table of the benchmarks
(``tests/bench/bench_scale.py`` writes the same file at 100M rows), and
three imports of it, each import's process at most ``PEAK_BYTES`` resident:

1. the first import (chunks written as the file is parsed);
2. a re-upload with 0.1 % of the rows changed, by lines (``lines``,
   matched on disk past ``matching.EXTERNAL_ROWS``);
3. another, with the line index gone: every row parsed and matched by
   row hash on disk (``dedup`` → ``matching``);

then pages at random offsets and a filtered page, against the generator.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.bench.bench_import import Stack, frame, free_port, login
from tests.bench.bench_scale import edited, imported, write_version

pytestmark = pytest.mark.slow

ROWS = 10_000_000
PEAK_BYTES = 1.5 * 1024**3


@pytest.fixture(scope="module")
def big() -> Iterator[tuple[Stack, Path]]:
    tmp = Path(tempfile.mkdtemp(prefix="dsa-scale-test-"))
    stack = Stack(tmp / "home", free_port())
    try:
        stack.wait_ready(180)
        yield stack, tmp
    finally:
        stack.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _imported(stack: Stack, client: Any, ds: str, csv: Path) -> dict[str, Any]:
    """The upload's job result (``upload`` fails on a failed job), the
    import's process within ``PEAK_BYTES`` (the largest of the worker's
    tree at its high-water mark: the import's child)."""
    got = imported(client, stack, ds, csv, ROWS)
    assert got["worker_peak_single_bytes"] <= PEAK_BYTES, got["worker_peak_single_bytes"] / 2**20
    return dict(got["result"])


def test_a_10m_row_table_imports_and_re_uploads_in_bounded_memory(
    big: tuple[Stack, Path],
) -> None:
    stack, tmp = big
    csv = tmp / "big.csv"
    client = login(stack)
    ds = client.post("/api/v1/datasets", json={"name": "big"}).json()["id"]

    write_version(csv, ROWS, 0)
    first = _imported(stack, client, ds, csv)
    assert first["table_rows"] == ROWS

    write_version(csv, ROWS, 1)  # 0.1 % of the rows' scores changed
    by_lines = _imported(stack, client, ds, csv)
    assert by_lines["table_rows"] == ROWS
    assert 8_000 < by_lines["parsed_rows"] < 12_000  # only the changed lines parsed

    write_version(csv, ROWS, 2)
    shutil.rmtree(tmp / "home" / "objects" / "lines")  # every row parsed and matched
    by_rows = _imported(stack, client, ds, csv)
    assert by_rows["table_rows"] == ROWS and "parsed_rows" not in by_rows
    csv.unlink()

    rng = random.Random(19)
    url = f"/api/v1/datasets/{ds}/refs/main/data"
    for offset in [0, ROWS - 100, *(rng.randrange(ROWS - 100) for _ in range(5))]:
        body = client.get(url, params={"offset": offset, "limit": 100}).json()
        assert [r[0] for r in body["rows"]] == list(range(offset, offset + 100))
        expected = edited(frame(offset, 100), 2).get_column("score").to_list()
        assert [r[5] for r in body["rows"]] == pytest.approx(expected), offset
    lo = rng.randrange(ROWS - 1000)
    body = client.get(url, params={"filter": f"id >= {lo} and id < {lo + 500}"}).json()
    assert body["total_rows"] == 500
    assert [r[0] for r in body["rows"]] == list(range(lo, lo + 100))

"""Lines paired where they stand first (``aligned``, decision 0042) against
the pairing by hash and occurrence it stands in for: the same unmatched
lines and the same runs, whatever the edits, duplicates and slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.objects import Manifest
from features.imports import aligned, lines
from features.imports.line_index import Records


def _records(path: Path, words: np.ndarray) -> Records:
    path.write_bytes(b"xy" + words.astype("<u8").tobytes())
    return Records(path, 2, len(words))


def _layout(rng: np.random.Generator, rows: int) -> Manifest:
    """A manifest of ``rows`` rows in pieces of a few chunks (as re-uploads leave)."""
    ids = [f"{i:064x}" for i in range(4)]
    chunk, start, length = [], [], []
    at = [0, 0, 0, 0]
    left = rows
    while left:
        n = int(min(left, rng.integers(1, 40)))
        c = int(rng.integers(0, 4))
        chunk.append(c)
        start.append(at[c])
        length.append(n)
        at[c] += n + int(rng.integers(0, 3))
        left -= n
    if not rows:
        return Manifest.from_columns(ids, [], [], [])
    return Manifest.from_columns(ids, chunk, start, length)


def _edited(
    rng: np.random.Generator, old: np.ndarray, pool: np.ndarray, edits: list[tuple[str, int]]
) -> np.ndarray:
    rows = list(map(tuple, old.tolist()))
    for op, at in edits:
        i = at % (len(rows) + 1)
        fresh = (
            tuple(pool[rng.integers(0, len(pool))].tolist())
            if rng.random() < 0.5
            else (
                int(rng.integers(0, 2**63)),
                int(rng.integers(0, 2**63)),
            )
        )
        if op == "ins":
            rows.insert(i, fresh)
        elif op == "del" and rows:
            del rows[i % len(rows)]
        elif op == "edit" and rows:
            rows[i % len(rows)] = fresh
        elif op == "append":
            rows.append(fresh)
        elif op == "cut":
            rows = rows[: len(rows) - at % 5]
    return np.array(rows, dtype=np.uint64).reshape(-1, 2)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    rows=st.integers(0, 600),
    distinct=st.sampled_from([1, 3, 30, 100_000]),
    edits=st.lists(
        st.tuples(st.sampled_from(["ins", "del", "edit", "append", "cut"]), st.integers(0, 700)),
        max_size=6,
    ),
    slice_rows=st.sampled_from([1, 7, 64, 1 << 20]),
    range_rows=st.sampled_from([1, 13, 1 << 20]),
    run=st.sampled_from([1, 3, 32]),
    window=st.sampled_from([2, 50, 1 << 16]),
)
def test_lines_paired_in_place_are_paired_as_by_occurrence(
    tmp_path_factory: pytest.TempPathFactory,
    seed: int,
    rows: int,
    distinct: int,
    edits: list[tuple[str, int]],
    slice_rows: int,
    range_rows: int,
    run: int,
    window: int,
) -> None:
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 2**63, (distinct, 2), dtype=np.uint64)
    old = pool[rng.integers(0, distinct, rows)]
    new = _edited(rng, old, pool, edits)
    tmp = tmp_path_factory.mktemp("aligned")
    new_file, old_file = _records(tmp / "new", new), _records(tmp / "old", old)
    manifest = _layout(rng, rows)
    expected = lines._place(new_file, old_file, manifest, 11, tmp)  # in memory, by occurrence
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(aligned, "SLICE_ROWS", slice_rows)
        mp.setattr(aligned, "RANGE_ROWS", range_rows)
        mp.setattr(aligned, "RUN", run)
        mp.setattr(aligned, "WINDOW", window)
        mp.setattr(aligned, "BUDGET", 10**6)  # the bound has its own test
        got = aligned.place(new_file, old_file, manifest, 11, 10**9, 10**9)
    assert expected is not None and got is not None
    assert got[0].to_list() == expected[0].to_list()
    assert got[1].rows() == expected[1].rows()


@pytest.mark.parametrize("shift", ["insert", "delete", "both", "block"])
def test_lines_inserted_or_deleted_shift_the_walk_not_the_pairing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shift: str
) -> None:
    """A line inserted or deleted near the top moves every later line: the
    walk finds the new offset, so little is left over and the join on disk
    does not run; the pairing is the one by occurrence."""
    rng = np.random.default_rng(7)
    old = rng.integers(0, 2**63, (20_000, 2), dtype=np.uint64)
    fresh = rng.integers(0, 2**63, (600, 2), np.uint64)
    new = {
        "insert": np.concatenate([old[:10], fresh[:1], old[10:]]),
        "delete": np.concatenate([old[:10], old[11:]]),
        "both": np.concatenate([old[:10], fresh[:3], old[10:5000], old[5002:15000], old[15001:]]),
        "block": np.concatenate([old[:100], fresh, old[100:9000], old[9500:]]),
    }[shift]
    new_file, old_file = _records(tmp_path / "new", new), _records(tmp_path / "old", old)
    manifest = Manifest.from_columns(["0" * 64, "1" * 64], [0, 1], [0, 0], [10_000, 10_000])
    work = tmp_path / "work"
    work.mkdir()
    expected = lines._place(new_file, old_file, manifest, 1000, work)

    def no_join(*args: object) -> None:
        raise AssertionError("paired on disk")

    monkeypatch.setattr(lines, "EXTERNAL_ROWS", 2000)
    monkeypatch.setattr(lines, "Pairing", no_join)
    monkeypatch.setattr(aligned, "SLICE_ROWS", 4096)
    got = lines._place(new_file, old_file, manifest, 1000, work)
    assert expected is not None and got is not None
    assert got[0].to_list() == expected[0].to_list()
    assert got[1].rows() == expected[1].rows()


def test_a_file_out_of_order_is_paired_by_hash_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file whose halves swapped places pairs one half in place and leaves
    the other over: past the limit the walk says so, and ``lines._place``
    pairs by hash on disk, with the same result."""
    rng = np.random.default_rng(9)
    old = rng.integers(0, 2**63, (3000, 2), dtype=np.uint64)
    new = np.concatenate([old[1500:], old[:1500]])
    new_file, old_file = _records(tmp_path / "new", new), _records(tmp_path / "old", old)
    manifest = Manifest.from_columns(["0" * 64], [0], [0], [3000])
    with pytest.raises(aligned.Misaligned):
        aligned.place(new_file, old_file, manifest, 1000, 10**9, 1000)
    work = tmp_path / "work"
    work.mkdir()
    expected = lines._place(new_file, old_file, manifest, 1000, work)
    monkeypatch.setattr(lines, "EXTERNAL_ROWS", 1000)
    got = lines._place(new_file, old_file, manifest, 1000, work)
    assert expected is not None and got is not None
    assert got[0].to_list() == expected[0].to_list()
    assert got[1].rows() == expected[1].rows()
    assert list(work.iterdir()) == []


def test_edited_values_are_paired_in_place_without_the_disk_join(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(8)
    old = rng.integers(0, 2**63, (5000, 2), dtype=np.uint64)
    new = old.copy()
    new[rng.choice(5000, 50, replace=False)] = rng.integers(0, 2**63, (50, 2), np.uint64)
    new = np.concatenate([new, old[:5]])  # five lines appended that repeat the first ones
    new_file, old_file = _records(tmp_path / "new", new), _records(tmp_path / "old", old)
    manifest = Manifest.from_columns(["0" * 64, "1" * 64], [0, 1], [0, 0], [2500, 2500])
    work = tmp_path / "work"
    work.mkdir()
    expected = lines._place(new_file, old_file, manifest, 1000, work)

    def no_join(*args: object) -> None:
        raise AssertionError("paired on disk")

    monkeypatch.setattr(lines, "EXTERNAL_ROWS", 1000)
    monkeypatch.setattr(lines, "Pairing", no_join)
    got = lines._place(new_file, old_file, manifest, 1000, work)
    assert expected is not None and got is not None
    assert int(got[0].sum()) == 50 + 5  # the duplicated tail pairs with nothing left over
    assert got[0].to_list() == expected[0].to_list()
    assert got[1].rows() == expected[1].rows()


def test_many_shifts_cost_about_one_read_of_each_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line inserted or deleted every 300 lines (a sorted file with new
    records among the old): the walk finds each shift reading a little past
    it (here ~4x the files' lines in all), not a block a shift."""
    rng = np.random.default_rng(11)
    old = rng.integers(0, 2**63, (200_000, 2), dtype=np.uint64)
    parts, at = [], 0
    for k, cut in enumerate(range(300, 200_000, 300)):
        parts.append(old[at:cut])
        if k % 2:
            parts.append(rng.integers(0, 2**63, (1, 2), np.uint64))  # inserted
        else:
            cut += 1  # deleted
        at = cut
    parts.append(old[at:])
    new = np.concatenate(parts)
    new_file, old_file = _records(tmp_path / "new", new), _records(tmp_path / "old", old)
    manifest = Manifest.from_columns(["0" * 64], [0], [0], [200_000])
    work = tmp_path / "work"
    work.mkdir()
    expected = lines._place(new_file, old_file, manifest, 1000, work)
    read = [0]
    real = aligned._Walk._words

    def words(self: aligned._Walk, records: Records, lo: int, hi: int) -> np.ndarray:
        read[0] += max(0, hi - lo)
        return real(self, records, lo, hi)

    monkeypatch.setattr(aligned._Walk, "_words", words)
    got = aligned.place(new_file, old_file, manifest, 1000, 10**9, 10_000)
    assert expected is not None and got is not None
    assert got[0].to_list() == expected[0].to_list()
    assert got[1].rows() == expected[1].rows()
    assert read[0] < aligned.BUDGET * (len(new) + len(old))


def test_too_much_left_over_is_known_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old version far longer than the new file (or a big append): the
    tail past the limit is refused before its hashes are read."""
    rng = np.random.default_rng(12)
    old = rng.integers(0, 2**63, (50_000, 2), dtype=np.uint64)
    new_file, old_file = _records(tmp_path / "new", old[:10]), _records(tmp_path / "old", old)
    manifest = Manifest.from_columns(["0" * 64], [0], [0], [50_000])
    biggest = [0]
    real = Records.words

    def words(self: Records, lo: int, hi: int, dtype: str = "<u8") -> np.ndarray:
        biggest[0] = max(biggest[0], min(hi, self.count) - lo)
        return real(self, lo, hi, dtype)

    monkeypatch.setattr(Records, "words", words)
    with pytest.raises(aligned.Misaligned):
        aligned.place(new_file, old_file, manifest, 1000, 10**9, 1000)
    assert biggest[0] <= 10


def test_many_copies_of_a_changed_line_are_paired_by_hash_instead(tmp_path: Path) -> None:
    """A line repeated all through the file and edited once: every copy is
    unsettled; past the limit the pairing says so."""
    rng = np.random.default_rng(13)
    old = rng.integers(0, 2**63, (3000, 2), dtype=np.uint64)
    old[::2] = old[0]
    new = old.copy()
    new[1000] = rng.integers(0, 2**63, (1, 2), np.uint64)  # one copy left over
    new_file, old_file = _records(tmp_path / "new", new), _records(tmp_path / "old", old)
    manifest = Manifest.from_columns(["0" * 64], [0], [0], [3000])
    with pytest.raises(aligned.Misaligned):
        aligned.place(new_file, old_file, manifest, 1000, 10**9, 1000)
    assert aligned.place(new_file, old_file, manifest, 1000, 10**9, 2000) is not None


def test_a_version_too_fragmented_to_keep_is_said_so(tmp_path: Path) -> None:
    rng = np.random.default_rng(14)
    old = rng.integers(0, 2**63, (3000, 2), dtype=np.uint64)
    new = old.copy()
    new[::3] = rng.integers(0, 2**63, (1000, 2), np.uint64)  # every third line edited
    new_file, old_file = _records(tmp_path / "new", new), _records(tmp_path / "old", old)
    manifest = Manifest.from_columns(["0" * 64], [0], [0], [3000])
    assert aligned.place(new_file, old_file, manifest, 1000, 100, 10**9) is None
    assert aligned.place(new_file, old_file, manifest, 1000, 10**9, 10**9) is not None

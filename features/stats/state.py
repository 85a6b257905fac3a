"""Statistics that merge by piece: a chunk's mergeable state.

A version's statistics are a merge of states. Each chunk gets one when it is
written (the import's chunk writer calls ``chunk_state`` on a thread of its
own: the rows are in hand, nothing is read back) or at the first need
(``pieces``), kept beside the chunk as ``chunkstats/<chunk id>``. A version whose pieces are whole
chunks (a fresh import; a re-upload that appended or replaced whole runs)
then merges the states of the chunks it shares with its parent with those
of the few new ones, and reads only the rows of pieces that cut a chunk.

A state holds, per column, what ``compute`` accumulates (counts, NaN and
infinities, min and max, count, mean and M2, the KMV sketch, exact value
counts while a column holds at most ``EXACT_VALUES`` values) and, for the
table, a **sample** of the chunk's rows (the columns whose results use
it), each with a pseudo-random key of its place in the chunk, kept apart
from the columns (a column may have any name): the rows whose key is below the chunk's
bound (every row of a chunk of at most ``SMALL`` rows, else one in
``SHARE``). The union of the pieces' samples, cut at one bound for all, is
a uniform sample of the version (each row in it with the same probability),
whatever the pieces: quantiles, histograms and estimated top values come
from it as they come from ``compute``'s systematic sample.

Value hashes are polars' (fixed seed), stable within a polars version only:
a state records the version that made it, and one made by another is
computed again rather than merged (``load``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from core.schema import Column, kind_of
from features.stats.compute import COUNTED, NUMERIC, TEMPORAL, Acc, K, polars_dtype

VERSION = 2  # of the state's contents: a state of another version is computed again
SMALL = 16_384  # a chunk of at most this many rows keeps them all in its sample
SHARE = 32  # a larger chunk keeps one row in SHARE
# a chunk's column with at most PROBE_FEW values in its first PROBE_ROWS rows
# (of at most EXACT_VALUES values drawn at random, ~870 show in 2,048 rows)
PROBE_ROWS, PROBE_FEW = 2048, 900
SAMPLED = NUMERIC | TEMPORAL | COUNTED  # kinds whose results use the sample
_U64 = 2**64
_MAGIC = b"DSAS"


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a uint64 array's bits spread (wrapping arithmetic)."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def keys(seed: int, first: int, rows: int) -> np.ndarray:
    """The sample keys of ``rows`` rows at places ``first…`` under ``seed``."""
    with np.errstate(over="ignore"):
        places = np.arange(first, first + rows, dtype=np.uint64)
        return _mix(places + np.uint64(seed % _U64))


def chunk_seed(cid: str) -> int:
    return int(cid[:16], 16)


def bound_of(rows: int) -> int:
    """Keys below this enter a chunk's sample (``_U64``: every row)."""
    return _U64 if rows <= SMALL else _U64 // SHARE


def sampled(columns: Sequence[Column]) -> list[str]:
    """The columns a sample holds: those whose results use it."""
    return [c.name for c in columns if kind_of(c.type) in SAMPLED]


@dataclass
class State:
    """What a run of rows contributes to a version's statistics."""

    rows: int
    bound: int  # the sample holds every row whose key is below this
    columns: list[Acc]
    sample: pa.Table  # the sampled rows' values of the ``sampled`` columns
    keys: np.ndarray  # their keys (uint64), in the sample's order


def of_rows(
    columns: list[Column],
    windows: Iterable[pa.Table],
    keys_of: Callable[[int, int], np.ndarray],
    bound: int,
    *,
    one: bool = False,
    known: dict[str, tuple[Any, Any]] | None = None,
) -> State:
    """The state of rows read as ``windows``; ``keys_of(at, n)``: the sample
    keys of the ``n`` rows from the ``at``-th. ``one``: a single window (a
    chunk), whose values are counted exactly only where its sketch found
    few (a unique over its hashes is cheaper than counting a column of
    distinct values and finding out); ``known``: its columns' min and max
    where its file's statistics gave them (``core.chunks.text_extremes``)."""
    acc = [Acc(c, counting=not one, known=(known or {}).get(c.name)) for c in columns]
    names = sampled(columns)
    schema = _empty(tuple(columns)).schema
    sample: list[pa.Table] = []
    kept: list[np.ndarray] = []
    at = 0
    for t in windows:
        frame = pl.from_arrow(t)
        assert isinstance(frame, pl.DataFrame)
        if not frame.height:
            continue
        if one:
            _probe(acc, frame)
        exprs = [e for i, a in enumerate(acc) for e in a.exprs(i, frame.height)]
        res = frame.select(exprs)
        hashes = [c for c in res.columns if c.endswith((".hashes", ".counts"))]
        agg = res.drop(hashes).row(0, named=True)
        agg.update({c: res.get_column(c)[0] for c in hashes})
        for i, a in enumerate(acc):
            a.add(i, agg, frame, None)
            if one:
                a.count_few(frame.get_column(a.col.name))
        k = keys_of(at, frame.height)
        rows = t.select(names)
        if bound < _U64:
            picked = k < np.uint64(bound)
            rows, k = rows.filter(pa.array(picked)), k[picked]
        sample.append(_cut_text(rows).cast(schema))
        kept.append(k)
        at += frame.height
    return State(at, bound, acc, _concat(sample, columns), _joined(kept))


def _probe(acc: list[Acc], frame: pl.DataFrame) -> None:
    """Guess each column's kind of values from its first ``PROBE_ROWS`` rows,
    so one pass does: at most ``PROBE_FEW`` values: counted (if a counted
    type); values repeating within them: every hash kept, unfiltered (a
    sketch filtered for many values that found few would take a second
    pass); else the sketch filtered. A wrong guess costs time, not
    correctness."""
    head = frame.head(PROBE_ROWS)
    seen = head.select([pl.col(a.col.name).n_unique().alias(str(i)) for i, a in enumerate(acc)])
    for a, n in zip(acc, seen.row(0), strict=True):
        a.count_hint = n <= PROBE_FEW
        a.few = n <= 0.9 * head.height


def chunk_state(
    cid: str,
    table: pa.Table,
    columns: list[Column],
    known: dict[str, tuple[Any, Any]] | None = None,
) -> State:
    """A chunk's state from its rows (``table``: the chunk's columns);
    ``known``: extremes its file's statistics gave (``of_rows``)."""
    seed = chunk_seed(cid)
    return of_rows(
        columns,
        [table],
        lambda at, n: keys(seed, at, n),
        bound_of(table.num_rows),
        one=True,
        known=known,
    )


def _cut_text(rows: pa.Table) -> pa.Table:
    """Long strings cut to 200 characters (a sample's memory stays bounded,
    as in ``compute``)."""
    for i, f in enumerate(rows.schema):
        if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
            rows = rows.set_column(i, f, pc.utf8_slice_codeunits(rows.column(i), 0, 200))
    return rows


def _joined(keys: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(keys) if keys else np.empty(0, dtype=np.uint64)


def _concat(parts: list[pa.Table], columns: list[Column]) -> pa.Table:
    """The samples' rows as one table (Arrow: one conversion to polars for
    the result, not one a piece)."""
    if parts:
        return pa.concat_tables(parts, promote_options="permissive")
    return _empty(tuple(columns))


@lru_cache(maxsize=256)
def _empty(columns: tuple[Column, ...]) -> pa.Table:
    """A sample of no rows: its schema is every sample's of these columns."""
    names = set(sampled(columns))
    frame = pl.DataFrame(
        [pl.Series(c.name, [], dtype=polars_dtype(c.type)) for c in columns if c.name in names]
    )
    return frame.to_arrow()


class Merger:
    """Folds states into one as they come, holding one sketch a column
    (compacted every ``COMPACT_EVERY`` states) and the samples cut at
    ``cut``: memory stays bounded by the sample and the columns, not the
    number of chunks."""

    COMPACT_EVERY = 32

    def __init__(self, columns: list[Column], cut: int) -> None:
        self.columns, self.cut, self.bound = columns, cut, cut
        self.acc = [Acc(c, counting=True) for c in columns]
        self.kmvs: list[list[np.ndarray]] = [[] for _ in columns]
        self.samples: list[pa.Table] = []
        self.keys: list[np.ndarray] = []
        self.rows = self.pending = 0

    def add(self, s: State, times: int = 1) -> None:
        """Fold ``s`` in, ``times`` times (a chunk the version uses whole more
        than once: its rows are there that many times)."""
        for _ in range(times):
            for a, b in zip(self.acc, s.columns, strict=True):
                a.merge(b, sketch=False)
            self.rows += s.rows
        for kmvs, b in zip(self.kmvs, s.columns, strict=True):
            kmvs.append(b.kmv)
        self.bound = min(self.bound, s.bound)
        sample, keys = _cut(s.sample, s.keys, self.cut)
        self.samples += [sample] * times
        self.keys += [keys] * times
        self.pending += 1
        if self.pending >= self.COMPACT_EVERY:
            self._compact()

    def _compact(self) -> None:
        for a, kmvs in zip(self.acc, self.kmvs, strict=True):
            a.merge_sketches(kmvs)
        self.kmvs = [[] for _ in self.columns]
        self.pending = 0

    def state(self) -> State:
        """The folded state, its sample cut at the lowest bound of all."""
        self._compact()
        cut = [_cut(s, k, self.bound) for s, k in zip(self.samples, self.keys, strict=True)]
        return State(
            self.rows,
            self.bound,
            self.acc,
            _concat([s for s, _ in cut], self.columns),
            _joined([k for _, k in cut]),
        )


def _cut(sample: pa.Table, keys: np.ndarray, bound: int) -> tuple[pa.Table, np.ndarray]:
    """A sample's rows whose keys are below ``bound``."""
    if bound >= _U64 or not len(keys) or int(keys.max()) < bound:
        return sample, keys
    mask = keys < np.uint64(bound)
    return sample.filter(pa.array(mask)), keys[mask]


def merge(states: Sequence[State], columns: list[Column], bound: int) -> State:
    """One state of all ``states``, its sample cut at ``bound`` (or lower:
    at most each state's own)."""
    m = Merger(columns, bound)
    for s in states:
        m.add(s)
    return m.state()


def result(state: State) -> dict[str, Any]:
    """The statistics of the rows a (merged) state holds: ``compute``'s form."""
    rows = state.rows
    sample = pl.from_arrow(state.sample)
    assert isinstance(sample, pl.DataFrame)
    out = []
    for a in state.columns:
        a.sample = []
        if a.col.name in sample.columns:
            a.take_sample(sample.get_column(a.col.name))
        out.append(a.result(rows))
    return {"row_count": rows, "sample_rows": state.sample.num_rows, "columns": out}


# -- stored form ----------------------------------------------------------------------
# "DSAS", then frames of a 4-byte little-endian length and bytes: a JSON header
# (the chunk, the counts, each column's scalars and sketch length), the
# extremes (two rows: min, max), the sketches' hashes end to end, the sample's
# keys (both little-endian uint64), each counted column's value counts, the
# sample; the tables as Arrow IPC streams (LZ4).


def dump(state: State, cid: str = "") -> bytes:
    head = {
        "version": VERSION,
        "polars": pl.__version__,
        "chunk": cid,
        "rows": state.rows,
        "bound": str(state.bound),
        "columns": [{**a.scalars(), "kmv": len(a.kmv)} for a in state.columns],
    }
    extremes = pl.DataFrame([a.extremes().alias(str(i)) for i, a in enumerate(state.columns)])
    kmv = _joined([a.kmv for a in state.columns])
    frames = [
        orjson.dumps(head),
        _ipc(extremes.to_arrow()),
        kmv.astype("<u8").tobytes(),
        state.keys.astype("<u8").tobytes(),
    ]
    frames += [_ipc(a.counts_frame().to_arrow()) for a in state.columns if a.counts is not None]
    frames.append(_ipc(state.sample))
    return _MAGIC + b"".join(struct.pack("<I", len(f)) + f for f in frames)


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.ipc.new_stream(sink, table.schema, options=options) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def _arrow(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


class _Damaged(Exception):
    pass


def load(data: bytes, columns: list[Column], cid: str = "") -> State | None:
    """A stored state, or None where it cannot be merged with one made now:
    another version of the state or of polars' hashes, other columns or
    another chunk, or anything damaged (a cache: it is made again)."""
    try:
        return _load(data, columns, cid)
    except (_Damaged, ValueError, TypeError, KeyError, IndexError, struct.error):
        return None
    except (pa.ArrowException, pl.exceptions.PolarsError, OverflowError):
        return None


def _check(ok: bool) -> None:
    if not ok:
        raise _Damaged


def _load(data: bytes, columns: list[Column], cid: str) -> State | None:
    _check(data.startswith(_MAGIC))
    frames, at = [], len(_MAGIC)
    while at < len(data):
        (n,) = struct.unpack_from("<I", data, at)
        _check(at + 4 + n <= len(data))
        frames.append(data[at + 4 : at + 4 + n])
        at += 4 + n
    _check(len(frames) >= 5)
    head = orjson.loads(frames[0])
    if head["version"] != VERSION or head["polars"] != pl.__version__:
        return None
    _check(head["chunk"] == cid)
    scalars = head["columns"]
    _check([(c["name"], c["type"]) for c in scalars] == [(c.name, c.type) for c in columns])
    rows, bound = int(head["rows"]), int(head["bound"])
    _check(rows >= 0 and 0 < bound <= _U64)
    _check(all(int(c[k]) >= 0 for c in scalars for k in ("nulls", "nans", "infs", "n")))
    extremes = _arrow(frames[1])
    kmv = np.frombuffer(frames[2], dtype="<u8").astype(np.uint64)
    keys = np.frombuffer(frames[3], dtype="<u8").astype(np.uint64)
    lengths = [int(c["kmv"]) for c in scalars]
    _check(all(0 <= n <= K for n in lengths) and sum(lengths) == len(kmv))
    sample = _arrow(frames[-1])
    _check(sample.schema.equals(_empty(tuple(columns)).schema) and sample.num_rows == len(keys))
    _check(extremes.num_rows == 2 and extremes.num_columns == len(columns))
    counted = iter(frames[4:-1])
    acc, end = [], 0
    for i, (c, sc) in enumerate(zip(columns, scalars, strict=True)):
        counts = _counts(next(counted), c) if sc["counted"] else None
        ends = _extremes(extremes.column(i), c)
        acc.append(Acc.restore(c, sc, ends, kmv[end : end + lengths[i]], counts))
        end += lengths[i]
    _check(next(counted, None) is None)
    return State(rows, bound, acc, sample, keys)


def _extremes(arr: pa.ChunkedArray, c: Column) -> pl.Series:
    s = pl.Series(arr)
    _check(s.dtype == pl.Null or s.dtype == polars_dtype(c.type))
    _check(s.null_count() in (0, 2))
    return s


def _counts(data: bytes, c: Column) -> pl.DataFrame:
    frame = pl.from_arrow(_arrow(data))
    assert isinstance(frame, pl.DataFrame)
    _check(frame.columns == ["v", "c"] and frame.schema["v"] == polars_dtype(c.type))
    _check(frame["v"].null_count() == 0 and (frame.height == 0 or int(frame["c"].min()) > 0))  # type: ignore[arg-type]
    return frame

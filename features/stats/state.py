"""Statistics that merge by piece: a chunk's mergeable state.

A version's statistics are a merge of states. Each chunk gets one when it is
written (``imports`` calls ``chunk_state`` on its write pool: the rows are in
hand, nothing is read back) or at the first need (``service``), kept beside
the chunk as ``chunkstats/<chunk id>``. A version whose pieces are whole
chunks (a fresh import; a re-upload that appended or replaced whole runs)
then merges the states of the chunks it shares with its parent with those
of the few new ones, and reads only the rows of pieces that cut a chunk.

A state holds, per column, what ``compute`` accumulates (counts, NaN and
infinities, min and max, count, mean and M2, the KMV sketch, exact value
counts while a column holds at most ``EXACT_VALUES`` values) and, for the
table, a **sample** of the chunk's rows chosen by a pseudo-random key of
each row's place in the chunk: the rows whose key is below the chunk's
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
from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from core.schema import Column
from features.stats.compute import Acc, polars_dtype

VERSION = 1  # of the state's contents: a state of another version is computed again
SMALL = 16_384  # a chunk of at most this many rows keeps them all in its sample
SHARE = 32  # a larger chunk keeps one row in SHARE
PROBE_ROWS, PROBE_FEW = 2048, 64  # a chunk's column with few values in its first rows
_U64 = 2**64
_MAGIC = b"DSAS"
_KEY = "_key"


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


@dataclass
class State:
    """What a run of rows contributes to a version's statistics."""

    rows: int
    bound: int  # the sample holds every row whose key is below this
    columns: list[Acc]
    sample: pa.Table  # the sampled rows' columns and their keys (``_KEY``)


def of_rows(
    columns: list[Column],
    windows: Iterable[pa.Table],
    keys_of: Callable[[int, int], np.ndarray],
    bound: int,
    *,
    one: bool = False,
) -> State:
    """The state of rows read as ``windows``; ``keys_of(at, n)``: the sample
    keys of the ``n`` rows from the ``at``-th. ``one``: a single window (a
    chunk), whose values are counted exactly only where its sketch found
    few (a unique over its hashes is cheaper than counting a column of
    distinct values and finding out)."""
    acc = [Acc(c, counting=not one) for c in columns]
    sample: list[pa.Table] = []
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
        picked = k < bound if bound < _U64 else np.ones(frame.height, dtype=bool)
        kept = frame.filter(pl.Series(picked)).with_columns(pl.Series(_KEY, k[picked]))
        sample.append(_cut_text(kept).to_arrow())
        at += frame.height
    return State(at, bound, acc, _concat(sample, columns))


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


def chunk_state(cid: str, table: pa.Table, columns: list[Column]) -> State:
    """A chunk's state from its rows (``table``: the chunk's columns)."""
    seed = chunk_seed(cid)
    return of_rows(
        columns, [table], lambda at, n: keys(seed, at, n), bound_of(table.num_rows), one=True
    )


def _cut_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Long strings cut (a sample's memory stays bounded, as in ``compute``)."""
    cut = [pl.col(n).str.slice(0, 200) for n, d in frame.schema.items() if d == pl.String]
    return frame.with_columns(cut) if cut else frame


def _concat(parts: list[pa.Table], columns: list[Column]) -> pa.Table:
    """The samples' rows as one table (Arrow: one conversion to polars for
    the result, not one a piece)."""
    if parts:
        return pa.concat_tables(parts, promote_options="permissive")
    empty = {c.name: pl.Series([], dtype=polars_dtype(c.type)) for c in columns}
    return pl.DataFrame({**empty, _KEY: pl.Series([], dtype=pl.UInt64)}).to_arrow()


def merge(states: Sequence[State], columns: list[Column], bound: int) -> State:
    """One state of all ``states`` (in table order), its sample cut at ``bound``
    (at most each state's own)."""
    acc = [Acc(c, counting=True) for c in columns]
    for s in states:
        for a, b in zip(acc, s.columns, strict=True):
            a.merge(b, sketch=False)
    for i, a in enumerate(acc):  # the sketches in one sort a column, not one a state
        a.merge_sketches([s.columns[i].kmv for s in states])
    cut = pa.scalar(min(bound, _U64 - 1), pa.uint64())
    parts = [
        s.sample if bound >= s.bound else s.sample.filter(pc.less(s.sample[_KEY], cut))
        for s in states
    ]
    return State(sum(s.rows for s in states), bound, acc, _concat(parts, columns))


def result(state: State) -> dict[str, Any]:
    """The statistics of the rows a (merged) state holds: ``compute``'s form."""
    rows = state.rows
    sample = pl.from_arrow(state.sample)
    assert isinstance(sample, pl.DataFrame)

    out = []
    for a in state.columns:
        a.sample = []
        a.take_sample(sample.get_column(a.col.name))
        out.append(a.result(rows))
    return {"row_count": rows, "sample_rows": state.sample.num_rows, "columns": out}


# -- stored form ----------------------------------------------------------------------
# "DSAS", then frames of a 4-byte little-endian length and bytes: a JSON header
# (with each column's sketch length), the extremes (two rows: min, max), the
# sketches' hashes end to end (little-endian uint64), each counted column's
# value counts, the sample; the tables as Arrow IPC streams.


def dump(state: State) -> bytes:
    head = {
        "version": VERSION,
        "polars": pl.__version__,
        "rows": state.rows,
        "bound": str(state.bound),
        "columns": [{**a.scalars(), "kmv": len(a.kmv)} for a in state.columns],
    }
    extremes = pl.DataFrame([a.extremes().alias(str(i)) for i, a in enumerate(state.columns)])
    kmv = np.concatenate([a.kmv for a in state.columns] or [np.empty(0, np.uint64)])
    frames = [orjson.dumps(head), _ipc(extremes), kmv.astype("<u8").tobytes()]
    frames += [_ipc(a.counts_frame()) for a in state.columns if a.counts is not None]
    frames.append(_ipc(state.sample))
    return _MAGIC + b"".join(struct.pack("<I", len(f)) + f for f in frames)


def _ipc(frame: pl.DataFrame | pa.Table) -> bytes:
    table = frame.to_arrow() if isinstance(frame, pl.DataFrame) else frame
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.ipc.new_stream(sink, table.schema, options=options) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()  # type: ignore[no-any-return]


def _arrow(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


def _frame(data: bytes) -> pl.DataFrame:
    out = pl.from_arrow(_arrow(data))
    assert isinstance(out, pl.DataFrame)
    return out


def load(data: bytes, columns: list[Column]) -> State | None:
    """A stored state, or None where it cannot be merged with one made now
    (another version of the state or of polars' hashes, other columns)."""
    if not data.startswith(_MAGIC):
        return None
    frames, at = [], len(_MAGIC)
    while at < len(data):
        (n,) = struct.unpack_from("<I", data, at)
        frames.append(data[at + 4 : at + 4 + n])
        at += 4 + n
    head = orjson.loads(frames[0])
    if head["version"] != VERSION or head["polars"] != pl.__version__:
        return None
    if [(c["name"], c["type"]) for c in head["columns"]] != [(c.name, c.type) for c in columns]:
        return None
    extremes = _frame(frames[1])
    kmv = np.frombuffer(frames[2], dtype="<u8").astype(np.uint64)
    ends = np.cumsum([c["kmv"] for c in head["columns"]])
    counted = iter(frames[3:-1])
    acc = []
    for i, (c, scalars) in enumerate(zip(columns, head["columns"], strict=True)):
        counts = _frame(next(counted)) if scalars["counted"] else None
        sketch = kmv[ends[i] - scalars["kmv"] : ends[i]]
        acc.append(Acc.restore(c, scalars, extremes.get_column(str(i)), sketch, counts))
    return State(head["rows"], int(head["bound"]), acc, _arrow(frames[-1]))

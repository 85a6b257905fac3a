"""Column statistics of a table version, in one pass over its rows.

The rows arrive window by window (``core.scan``: 65,536 rows at a time, in
table order), so memory stays bounded whatever the table's size. Each
column keeps an accumulator that merges every window into it:

- **exact**: row count, null count, NaN count (floats), min and max, and for
  numbers the mean and standard deviation (Chan's parallel merge of count,
  mean and M2; NaN is left out of all of them);
- **distinct count**: a KMV sketch (the ``K`` smallest distinct 64-bit value
  hashes): exact while the column holds fewer than ``K`` distinct values,
  an estimate within ~2 % beyond (then ``distinct_approx``);
- **top values**: exact counts while the column holds at most
  ``EXACT_VALUES`` distinct values; beyond, counted in the sample and scaled
  (``top_values_approx``);
- **quantiles and histogram** (numbers and dates): from a systematic sample
  of at most ``SAMPLE_ROWS`` rows (every ``step``-th row of the table), exact
  when the table is no larger; histogram counts are scaled to the column's
  exact non-null count.

Value hashes are polars' (fixed seeds), which are stable within a process,
not across polars versions: sketches are merged within one computation and
never stored. What is stored is the result (``service``).
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from core.schema import Column, arrow_type, kind_of, parse_type

K = 4096  # KMV sketch size: relative error ~1/sqrt(K) ≈ 1.6 %
EXACT_VALUES = 1000  # exact top values while a column holds at most this many
SAMPLE_ROWS = 100_000  # rows kept for quantiles and histograms
TOP = 10
BINS = 20
NUMERIC = {"integer", "float", "decimal"}  # decimals: moments and bins as floats
TEMPORAL = {"date", "datetime", "datetime_tz", "time", "duration"}
ORDERED = NUMERIC | TEMPORAL | {"string", "boolean", "decimal", "time", "duration"}
COUNTED = {"string", "boolean", "integer", "date"}  # top values worth showing
_SEED = 0x5EED
_U64 = 2**64


@dataclass
class Acc:
    """A column's accumulator: what its windows (or, merged, its pieces'
    states: ``state``) have shown so far."""

    col: Column
    nulls: int = 0
    nans: int = 0
    infs: int = 0  # ±infinity (floats): in min, max and mean, in no histogram bin
    min: Any = None
    max: Any = None
    n: int = 0  # non-null, non-NaN values seen (numbers)
    mean: float = 0.0
    m2: float = 0.0
    kmv: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    below: int | None = None  # this window's hash bound (``_threshold``)
    few: bool = False  # few values: every hash kept (fewer than K seen below a bound, or a probe)
    counts: dict[Any, int] | None = field(default_factory=dict)
    sample: list[pl.Series] = field(default_factory=list)
    counting: bool = True  # counts values exactly from the start (else: ``count_few``)
    count_hint: bool = False  # a chunk's column that looks like few values: counted at once
    known: tuple[Any, Any] | None = None  # a chunk's min and max, from its file's statistics

    def __post_init__(self) -> None:
        if self.col.type not in COUNTED or not self.counting:
            self.counts = None

    def exprs(self, i: int, rows: int) -> list[pl.Expr]:
        """The window's aggregates of this column (``i``: its position, for
        unique names), all computed in one ``select`` with the others'."""
        kind, col = kind_of(self.col.type), pl.col(self.col.name)
        out = [col.null_count().alias(f"{i}.nulls")]
        values = col.drop_nulls()
        if kind == "float":
            out += [
                col.is_nan().sum().alias(f"{i}.nans"),
                col.is_infinite().sum().alias(f"{i}.infs"),
            ]
            values = values.filter(values.is_not_nan())
        if kind in ORDERED and self.known is None:
            out += [values.min().alias(f"{i}.min"), values.max().alias(f"{i}.max")]
        if kind in NUMERIC:
            if kind == "decimal":
                values = values.cast(pl.Float64)
            out += [
                values.count().alias(f"{i}.n"),
                values.mean().alias(f"{i}.mean"),
                values.var(ddof=0).alias(f"{i}.var"),
            ]
        if self.counts is not None:  # counted exactly: no sketch needed yet
            return out
        if self.count_hint and self.col.type in COUNTED:
            # a chunk's column that looked like few values (``state``): counted
            out.append(values.value_counts().implode().alias(f"{i}.counts"))
            return out
        h = values.hash(_SEED)
        self.below = self._threshold(rows)
        if self.below is not None:
            h = h.filter(h < self.below)
        out.append(h.unique().implode().alias(f"{i}.hashes"))
        return out

    def _threshold(self, rows: int) -> int | None:
        """Hashes of a window of ``rows`` that may enter the sketch are below
        this: its K-th smallest once full; before, one expecting ~4K hashes
        from the window (a unique over every value is the costliest step),
        checked in ``_sketch``; None: all (a column with few values)."""
        if len(self.kmv) >= K:
            return int(self.kmv[-1])
        if self.few or rows <= 4 * K:
            return None
        return min(_U64 - 1, _U64 // rows * 4 * K)

    def add(
        self, i: int, agg: dict[str, Any], frame: pl.DataFrame, sampled: pl.Series | None
    ) -> None:
        """Merge the window's aggregates ``agg`` (and its ``frame``, for
        value counts) into the column's; ``sampled``: the window's rows in
        the sample, if the accumulator keeps it."""
        kind = kind_of(self.col.type)
        self.nulls += agg[f"{i}.nulls"]
        if kind == "float":
            self.nans += agg[f"{i}.nans"] or 0
            self.infs += agg[f"{i}.infs"] or 0
        lo, hi = self.known or (agg.get(f"{i}.min"), agg.get(f"{i}.max"))
        if lo is not None:
            self.min = lo if self.min is None or lo < self.min else self.min
            self.max = hi if self.max is None or hi > self.max else self.max
        if agg.get(f"{i}.n"):
            self._moments(agg[f"{i}.n"], agg[f"{i}.mean"], agg[f"{i}.var"])
        if self.counts is not None:
            self._count(frame.get_column(self.col.name))
        elif f"{i}.counts" in agg:
            self._counted(agg[f"{i}.counts"])
        else:
            self._sketch(agg[f"{i}.hashes"], frame)
        if sampled is not None:
            self.take_sample(sampled)

    def take_sample(self, sampled: pl.Series) -> None:
        """Keep the sampled values a column's result needs: for quantiles and
        histograms; for estimated top values once counting stopped (nulls,
        NaN and infinities left out; long strings cut: the sample's memory
        stays bounded)."""
        kind = kind_of(self.col.type)
        if kind in NUMERIC or kind in TEMPORAL or (kind in COUNTED and self.counts is None):
            kept = sampled.drop_nulls()
            if kind == "float":
                kept = kept.filter(kept.is_finite())
            self.sample.append(kept.str.slice(0, 200) if kind == "string" else kept)

    def _moments(self, nb: int, mb: float, var: float) -> None:
        m2b = var * nb
        na, n = self.n, self.n + nb
        delta = mb - self.mean
        self.mean += delta * nb / n
        self.m2 += m2b + delta * delta * na * nb / n
        self.n = n

    def _sketch(self, hashes: pl.Series, frame: pl.DataFrame) -> None:
        filtered = self.below is not None and len(self.kmv) < K
        self._merge(hashes)
        if filtered and len(self.kmv) < K:  # fewer than K below the window's bound:
            self.few = True  # the column has few values; the window's every hash counts
            values = frame.get_column(self.col.name).drop_nulls()
            if self.col.type == "float":
                values = values.filter(values.is_not_nan())
            self._merge(values.hash(_SEED).unique())

    def _counted(self, counts: pl.Series) -> None:
        """A window's value counts (a struct series): kept while at most
        ``EXACT_VALUES``, else its values go into the sketch."""
        vc = counts.struct.unnest()
        if vc.height <= EXACT_VALUES:
            self.counts = dict(vc.iter_rows())
        else:
            self._merge(vc.to_series(0).hash(_SEED).unique())

    def _merge(self, hashes: pl.Series | np.ndarray) -> None:
        if not len(hashes):
            return
        more = hashes.to_numpy() if isinstance(hashes, pl.Series) else hashes
        both = np.concatenate([self.kmv, more])
        both.sort()
        keep = np.ones(len(both), dtype=bool)
        keep[1:] = both[1:] != both[:-1]
        self.kmv = both[keep][:K]

    def _count(self, column: pl.Series) -> None:
        """Count the window's values exactly; past ``EXACT_VALUES`` distinct
        ones, hand every value seen to the sketch and stop counting."""
        assert self.counts is not None
        vc = column.drop_nulls().value_counts()
        if len(vc) <= EXACT_VALUES:
            for v, c in vc.iter_rows():
                self.counts[v] = self.counts.get(v, 0) + c
            if len(self.counts) <= EXACT_VALUES:
                return
        seen = pl.concat([pl.Series(list(self.counts), dtype=column.dtype), vc.to_series(0)])
        self.counts = None
        self._merge(seen.hash(_SEED).unique())

    # -- states (``state``): accumulators kept and merged by piece --------------------

    def count_few(self, column: pl.Series) -> None:
        """A counted column whose sketch holds every one of its (at most
        ``EXACT_VALUES``) values: counted exactly instead (an accumulator of
        one window made with ``counting=False``)."""
        if self.col.type in COUNTED and self.counts is None and len(self.kmv) <= EXACT_VALUES:
            self.counts = dict(column.drop_nulls().value_counts().iter_rows())
            self.kmv = np.empty(0, dtype=np.uint64)

    def merge(self, b: Acc, *, sketch: bool = True) -> None:
        """Fold another run of rows' accumulator into this one (its sketch
        too unless ``sketch`` is false: ``merge_sketches`` then)."""
        self.nulls, self.nans, self.infs = (
            self.nulls + b.nulls,
            self.nans + b.nans,
            self.infs + b.infs,
        )
        if b.min is not None:
            self.min = b.min if self.min is None or b.min < self.min else self.min
            self.max = b.max if self.max is None or b.max > self.max else self.max
        if b.n:
            self._moments(b.n, b.mean, b.m2 / b.n)
        if self.counts is not None and b.counts is not None:
            for v, c in b.counts.items():
                self.counts[v] = self.counts.get(v, 0) + c
            if len(self.counts) > EXACT_VALUES:
                self._uncount(self.counts)
        elif self.counts is not None:
            self._uncount(self.counts)
        if b.counts is not None and self.counts is None:
            self._uncount(b.counts)
        if sketch:
            self._merge(b.kmv)

    def merge_sketches(self, sketches: list[np.ndarray]) -> None:
        """Fold many accumulators' sketches into this one's at once."""
        if any(len(k) for k in sketches):
            self._merge(np.concatenate(sketches))

    def _uncount(self, counts: dict[Any, int]) -> None:
        """Stop counting exactly: ``counts``' values go into the sketch."""
        self.counts = None
        values = pl.Series(list(counts), dtype=polars_dtype(self.col.type))
        self._merge(values.hash(_SEED).unique())

    def scalars(self) -> dict[str, Any]:
        return {
            "name": self.col.name,
            "type": self.col.type,
            "nulls": self.nulls,
            "nans": self.nans,
            "infs": self.infs,
            "n": self.n,
            "mean": repr(float(self.mean)),  # NaN and infinities are not JSON
            "m2": repr(float(self.m2)),
            "counted": self.counts is not None,
        }

    def extremes(self) -> pl.Series:
        if self.min is None:
            return pl.Series([None, None], dtype=pl.Null)
        return pl.Series([self.min, self.max], dtype=polars_dtype(self.col.type))

    def counts_frame(self) -> pl.DataFrame:
        assert self.counts is not None
        dtype = polars_dtype(self.col.type)
        values = pl.Series("v", list(self.counts), dtype=dtype)
        return pl.DataFrame([values, pl.Series("c", list(self.counts.values()), pl.Int64)])

    @classmethod
    def restore(
        cls,
        col: Column,
        scalars: dict[str, Any],
        extremes: pl.Series,
        kmv: np.ndarray,
        counts: pl.DataFrame | None,
    ) -> Acc:
        a = cls(col, counting=False)
        a.nulls, a.nans, a.infs = scalars["nulls"], scalars["nans"], scalars["infs"]
        a.n, a.mean, a.m2 = scalars["n"], float(scalars["mean"]), float(scalars["m2"])
        a.min, a.max = extremes[0], extremes[1]
        a.kmv = kmv.astype(np.uint64, copy=False)
        if counts is not None:
            a.counts = dict(
                zip(counts.get_column("v").to_list(), counts.get_column("c"), strict=True)
            )
        return a

    def result(self, rows: int) -> dict[str, Any]:
        kind = kind_of(self.col.type)
        out: dict[str, Any] = {
            "name": self.col.name,
            "type": kind,
            "null_count": self.nulls,
            "min": self.min,
            "max": self.max,
        }
        if kind == "float":
            out["nan_count"] = self.nans
        distinct, approx = self._distinct()
        out["distinct_count"] = distinct
        out["distinct_approx"] = approx
        if kind in NUMERIC and self.n:
            out["mean"] = self.mean
            out["stddev"] = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0
        sample = pl.concat(self.sample) if self.sample else pl.Series([], dtype=pl.Null)
        if (kind in NUMERIC or kind in TEMPORAL) and len(sample):
            out["quantiles"] = _quantiles(sample)
            finite = rows - self.nulls - self.nans - self.infs
            out["histogram"] = _histogram(sample, self.min, self.max, self.col.type, finite)
        if kind in COUNTED or kind in TEMPORAL:
            values = rows - self.nulls - self.nans
            top, top_approx = self._top(sample, values / len(sample) if len(sample) else 1.0)
            if top:
                out["top_values"] = top
                out["top_values_approx"] = top_approx
        return out

    def _distinct(self) -> tuple[int, bool]:
        if self.counts is not None:
            return len(self.counts), False
        if len(self.kmv) < K:
            return len(self.kmv), False
        kth = (int(self.kmv[-1]) + 1) / _U64  # the K-th smallest, as a fraction
        return round((K - 1) / kth), True

    def _top(self, sample: pl.Series, scale: float) -> tuple[list[dict[str, Any]], bool]:
        """The most frequent values; none when every value is distinct (a
        list of values seen once each says nothing)."""
        if self.counts is not None:
            if max(self.counts.values(), default=0) <= 1 and len(self.counts) > TOP:
                return [], False
            ranked = sorted(self.counts.items(), key=lambda kv: (-kv[1], _order(kv[0])))
            return [{"value": v, "count": c} for v, c in ranked[:TOP]], False
        if not len(sample):
            return [], False
        vc = sample.value_counts(sort=True)
        every = scale <= 1.0  # the sample holds every value
        if every and (len(vc) == 0 or vc.item(0, "count") <= 1):
            return [], False
        # a value seen only a few times in the sample says nothing of the table
        vc = vc.filter(pl.col("count") >= (1 if every else 5)).head(TOP)
        return [{"value": v, "count": round(c * scale)} for v, c in vc.iter_rows()], not every


def polars_dtype(kind: str) -> pl.DataType:
    """The polars type of a column of logical type ``kind``."""
    return pl.from_arrow(pa.array([], type=arrow_type(kind))).dtype  # type: ignore[union-attr]


def _order(v: Any) -> tuple[int, Any]:
    return (0, v) if v is not None else (1, 0)


def _quantiles(sample: pl.Series) -> dict[str, Any]:
    """p25, p50, p75: the values at rank ``round(q × (n − 1))`` (half up) of
    the sorted sample: values of the column's own type."""
    s = sample.sort()
    last = len(s) - 1
    return {
        name: s[int(q * last + 0.5)] for name, q in (("p25", 0.25), ("p50", 0.5), ("p75", 0.75))
    }


def _histogram(sample: pl.Series, lo: Any, hi: Any, kind: str, total: int) -> list[dict[str, Any]]:
    """``BINS`` equal bins over [lo, hi] (the sample's finite extremes where
    those are infinite), or one bin a value for an integer or date range of
    at most ``BINS`` values; counted in the sample, scaled to ``total``."""
    # ``kind``: a bare kind, or a decimal's type (its scale rounds the edges)
    if kind_of(kind) == "decimal":
        phys = sample.cast(pl.Float64).to_numpy()
    else:
        phys = sample.to_physical().cast(pl.Float64).to_numpy()
    a, b = _physical(lo, kind), _physical(hi, kind)
    a = a if math.isfinite(a) else float(phys.min())
    b = b if math.isfinite(b) else float(phys.max())
    if kind in {"integer", "date"} and b - a + 1 <= BINS:
        counts, _ = np.histogram(phys, bins=np.arange(a, b + 2) - 0.5)
        values = [_logical(a + i, kind) for i in range(len(counts))]
        return [
            {"lo": v, "hi": v, "count": c}
            for v, c in zip(values, _scaled(counts, total), strict=True)
        ]
    t = np.linspace(0.0, 1.0, BINS + 1)
    edges = a * (1 - t) + b * t  # no overflow between ±1.7e308
    edges[0], edges[-1] = a, b
    if not np.all(edges[:-1] < edges[1:]):  # one value (or too close for bins)
        return [{"lo": _logical(a, kind), "hi": _logical(b, kind), "count": total}]
    counts, _ = np.histogram(phys, bins=edges)
    return [
        {"lo": _logical(edges[i], kind), "hi": _logical(edges[i + 1], kind), "count": c}
        for i, c in enumerate(_scaled(counts, total))
    ]


def _scaled(counts: np.ndarray, total: int) -> list[int]:
    """``counts`` scaled to sum to ``total`` (largest remainders)."""
    have = int(counts.sum())
    if have == 0 or have == total:
        return [int(c) for c in counts]
    exact = counts * (total / have)
    base = np.floor(exact).astype(np.int64)
    rest = total - int(base.sum())
    if rest > 0:
        base[np.argsort(-(exact - base), kind="stable")[:rest]] += 1
    return [int(c) for c in base]


def _physical(v: Any, kind: str) -> float:
    if kind_of(kind) in TEMPORAL:
        return float(pl.Series([v]).to_physical()[0])
    return float(v)


def _logical(x: float, kind: str) -> Any:
    if kind_of(kind) == "decimal":  # a bin edge at the column's scale
        quantum = decimal.Decimal(1).scaleb(-parse_type(kind).scale)
        with decimal.localcontext(prec=60):
            return decimal.Decimal(repr(float(x))).quantize(quantum)
    if kind == "integer":
        return int(round(x))
    if kind == "float":
        return float(x)
    dtype: dict[str, pl.DataType] = {
        "date": pl.Date(),
        "datetime": pl.Datetime("us"),
        "datetime_tz": pl.Datetime("us", "UTC"),
        "time": pl.Time(),  # nanoseconds, as polars holds them (and the sample)
        "duration": pl.Duration("us"),
    }
    return pl.Series([int(round(x))]).cast(dtype[kind])[0]


def statistics(columns: list[Column], rows: int, windows: Iterable[pa.Table]) -> dict[str, Any]:
    """The statistics of a table of ``rows`` rows with ``columns``, read as
    ``windows`` (Arrow tables in table order, each with those columns)."""
    step = max(1, math.ceil(rows / SAMPLE_ROWS))
    acc = [Acc(c) for c in columns]
    at = 0
    for t in windows:
        frame = pl.from_arrow(t)
        assert isinstance(frame, pl.DataFrame)
        first = (-at) % step  # the window's first row whose table position is a multiple
        picked = frame[np.arange(first, frame.height, step)] if step > 1 else frame
        exprs = [e for i, a in enumerate(acc) for e in a.exprs(i, frame.height)]
        if not frame.height:
            continue
        res = frame.select(exprs)
        hashes = [c for c in res.columns if c.endswith((".hashes", ".counts"))]
        agg = res.drop(hashes).row(0, named=True)
        agg.update({c: res.get_column(c)[0] for c in hashes})  # Series, not lists
        for i, a in enumerate(acc):
            a.add(i, agg, frame, picked.get_column(a.col.name))
        at += frame.height
    return {
        "row_count": at,
        "sample_rows": len(range(0, at, step)),
        "columns": [a.result(at) for a in acc],
    }

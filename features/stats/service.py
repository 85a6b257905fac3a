"""Column statistics of table versions: computed, remembered, compared.

A version's statistics are merged from the states its chunks keep beside
them (``pieces``, ``state``: written by the import that wrote each chunk)
where its pieces are mostly whole chunks, else computed from its rows in
one bounded-memory pass (``compute``), and remembered in ``table_stats`` by
manifest and schema, so every commit that shares a table version shares
its statistics. They are computed

- by the worker right after a branch moves to a new version (``follow``:
  the task ``stats.follow``, sent once the move has committed; an import's,
  merge's or revert's response never waits for it), and
- at the first request for a version nobody computed yet (a tag made
  before this feature, a commit off every branch), under the request's
  deadline.

Values are in the JSON forms of data pages (docs/api.md, "Values in
JSON"): dates and datetimes as ISO 8601, integers beyond ±2^53 as strings.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pyarrow as pa
import structlog

from core import db
from core.config import get_settings
from core.isolation import run_isolated
from core.objects import TableEntry, get_commit
from core.queue import enqueue
from core.schema import Column
from core.storage import ObjectStore, get_store, needs_write
from core.typed_values import parse_duration
from features.data import service as data_service
from features.refs import service as refs_service
from features.stats import pieces, state

log = structlog.get_logger(__name__)
Q = db.Queries(__file__)
VERSION = 1  # of the computation: statistics of another version are computed again
MAX_TEXT = 200  # characters of a string kept in a statistic (min, max, top values)
# what a column's statistics compare on (stats_diff)
DIFF_FIELDS = (
    "null_count",
    "distinct_count",
    "min",
    "max",
    "mean",
    "stddev",
    "quantiles",
    "histogram",
    "top_values",
)


def table_stats(
    conn: psycopg.Connection[Any], dataset_id: uuid.UUID, ref: str, table: str | None
) -> dict[str, Any]:
    """The statistics of ``table`` at ``ref`` (the API's ``GET …/stats``)."""
    commit_id = refs_service.resolve(conn, dataset_id, ref)
    store = get_store()
    name, entry = data_service.table_of(get_commit(store, commit_id), table, ref)
    return {"commit_id": commit_id, "table": name, **of_version(conn, store, entry)}


def of_version(
    conn: psycopg.Connection[Any], store: ObjectStore, entry: TableEntry
) -> dict[str, Any]:
    """A table version's statistics: remembered, or computed now and remembered."""
    hit = known(conn, entry)
    if hit is not None:
        return hit
    return _compute_and_keep(conn, store, entry)


def known(conn: psycopg.Connection[Any], entry: TableEntry) -> dict[str, Any] | None:
    """The statistics computed before for a table version, or None."""
    row = conn.execute(
        Q.get_stats,
        {"manifest_id": entry.manifest, "schema_id": entry.schema, "version": VERSION},
    ).fetchone()
    return dict(row["stats"]) if row is not None else None


def _compute_and_keep(
    conn: psycopg.Connection[Any], store: ObjectStore, entry: TableEntry
) -> dict[str, Any]:
    started = time.perf_counter()
    stats = compute(conn, store, entry)
    _keep(entry, stats, time.perf_counter() - started)
    return stats


def _keep(entry: TableEntry, stats: dict[str, Any], seconds: float) -> None:
    """Remember a version's statistics; a cache that cannot be written is
    logged, never raised (the statistics are still answered)."""
    try:
        _put(entry, stats, seconds)
    except Exception:
        log.warning("could not remember statistics", manifest=entry.manifest, exc_info=True)
        return


def _put(entry: TableEntry, stats: dict[str, Any], seconds: float) -> None:
    with db.transaction() as w:
        w.execute(
            Q.put_stats,
            {
                "manifest_id": entry.manifest,
                "schema_id": entry.schema,
                "version": VERSION,
                "stats": orjson.dumps(stats).decode(),
                "seconds": seconds,
            },
        )
    log.info(
        "statistics computed",
        manifest=entry.manifest,
        rows=stats["row_count"],
        seconds=round(seconds, 3),
    )


def compute(conn: psycopg.Connection[Any], store: ObjectStore, entry: TableEntry) -> dict[str, Any]:
    """A table version's statistics in JSON-ready form: its chunks' states
    merged where its pieces are whole chunks, else its rows read (its read
    copy where it has one, else its chunks; ``pieces``)."""
    return _plain(pieces.of_version(store, entry, data_service.source(conn, entry)))


def chunk_written(
    store: ObjectStore,
    cid: str,
    table: pa.Table,
    columns: list[Column],
    known: dict[str, tuple[Any, Any]] | None = None,
) -> None:
    """An import wrote chunk ``cid`` of ``table``'s rows: keep its statistics'
    state (``state``) while its rows are in hand, unless kept already (a
    retried import); ``known``: extremes from the written file's statistics
    (``core.chunks.text_extremes``). Never fails: a missing state is made
    when needed."""
    try:
        # needs_write refreshes a kept state's age, as write_chunk does its chunk's
        if needs_write(store, pieces.state_key(cid)):
            pieces.keep(store, cid, state.chunk_state(cid, table, columns, known))
    except Exception:
        log.warning("could not compute a chunk's statistics", chunk=cid, exc_info=True)


def _plain(v: Any) -> Any:
    """``v`` in JSON-ready form (the rules of data pages, ``json_value``)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if hasattr(v, "item") and not isinstance(v, (bytes, str)):  # a numpy scalar
        v = v.item()
    if isinstance(v, str):  # jsonb holds no NUL; a statistic holds no essay
        v = v.replace("\x00", "\ufffd")
        return v if len(v) <= MAX_TEXT else v[:MAX_TEXT] + "…"
    return data_service.json_value(v)


def diff(base: dict[str, Any] | None, head: dict[str, Any] | None) -> list[dict[str, Any]]:
    """How each column's statistics moved between two versions (compare's
    ``stats_diff``): for every column of either side, in head's order then
    base's, its ``base`` and ``head`` statistics (None where the column is
    absent) and the fields that changed."""
    b = {c["name"]: c for c in (base or {}).get("columns", [])}
    h = {c["name"]: c for c in (head or {}).get("columns", [])}
    order = list(h) + [n for n in b if n not in h]
    out = []
    for name in order:
        bc, hc = b.get(name), h.get(name)
        changed = (
            [f for f in DIFF_FIELDS if (bc or {}).get(f) != (hc or {}).get(f)] if bc and hc else []
        )
        item: dict[str, Any] = {"column": name, "base": bc, "head": hc, "changed": changed}
        if bc and hc:
            item["top_values_gained"], item["top_values_lost"] = _top_moves(bc, hc)
        out.append(item)
    return out


def _top_moves(b: dict[str, Any], h: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    before = [t["value"] for t in b.get("top_values") or []]
    after = [t["value"] for t in h.get("top_values") or []]
    return [v for v in after if v not in before], [v for v in before if v not in after]


def follow(conn: psycopg.Connection[Any], old: str, new: str) -> None:
    """A branch is moving from ``old`` to ``new`` in ``conn``'s transaction:
    once that has committed, a worker computes the statistics of the new
    versions of its tables (the task ``stats.follow``)."""
    if old != new:
        db.after_commit(conn, lambda: _send(old, new))


def _send(old: str, new: str) -> None:
    try:
        enqueue("stats.follow", old, new)
    except Exception:  # the first request computes them instead
        log.warning("could not send stats.follow", commit=new, exc_info=True)


def follow_move(old: str, new: str) -> None:
    """Compute and remember the statistics of commit ``new``'s table versions
    that commit ``old`` does not hold and nobody computed (the task
    ``stats.follow``). The rows are read and counted in a forked child:
    polars' thread pool must not start in a worker process that forks
    import children afterwards (a fork of a process whose pool has threads
    can hang the child). The child touches no database (this process asks
    and stores); it hands its results back in a file. Never fails:
    statistics are a cache, computed again when asked for."""
    settings = get_settings()
    try:
        store = get_store()
        before = list(get_commit(store, old).tables.values())
        todo = []
        with db.read() as conn:
            for _, entry in sorted(get_commit(store, new).tables.items()):
                if entry not in before and known(conn, entry) is None:
                    todo.append((entry, data_service.source(conn, entry)))
        if not todo:
            return
        settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=settings.tmp_dir, prefix="stats-") as tmp:
            out = Path(tmp) / "stats.json"

            def child() -> None:
                done = []
                for entry, source in todo:
                    started = time.perf_counter()
                    stats = _plain(pieces.of_version(store, entry, source))
                    done.append([stats, time.perf_counter() - started])
                out.write_bytes(orjson.dumps(done))

            status = run_isolated(
                child,
                memory_bytes=settings.import_memory_limit_bytes,
                cpu_s=settings.import_cpu_limit_s,
            )
            if status != 0:
                log.warning("statistics child failed", commit=new, status=status)
                return
            for (entry, _), (stats, seconds) in zip(
                todo, orjson.loads(out.read_bytes()), strict=True
            ):
                _keep(entry, stats, seconds)
    except Exception:
        log.warning("could not compute statistics after a branch moved", commit=new, exc_info=True)


def known_at(conn: psycopg.Connection[Any], commit_id: str, table: str) -> dict[str, Any] | None:
    """The statistics of ``table`` at a commit if computed already (no scan:
    pages that only decorate with them never wait for them)."""
    entry = get_commit(get_store(), commit_id).tables.get(table)
    return known(conn, entry) if entry is not None else None


def bars(column: dict[str, Any]) -> list[dict[str, Any]]:
    """A column's small chart: its histogram, else its top values, as bars of
    height 0–1 with a label each (the web UI draws them)."""
    if column.get("histogram"):
        items = [(b["count"], _span(b["lo"], b["hi"])) for b in column["histogram"]]
    else:
        items = [(t["count"], str(t["value"])) for t in column.get("top_values") or []]
    top = max((c for c, _ in items), default=0) or 1
    return [{"h": c / top, "count": c, "label": label} for c, label in items]


def _span(lo: Any, hi: Any) -> str:
    return str(lo) if lo == hi else f"{lo} – {hi}"


def overlay(base: dict[str, Any] | None, head: dict[str, Any] | None) -> dict[str, Any] | None:
    """Both sides' histograms of a column on one axis (the compare page's
    picture): rectangles with x, width and height in 0–1 for each side, each
    bin's height its share of its side's values (so a grown table does not
    dwarf the other side), and the axis' ends; None unless both sides have
    histograms of values that place on one axis."""
    if not base or not head or not base.get("histogram") or not head.get("histogram"):
        return None
    kind = head["type"]
    try:
        sides = [
            [(_x(b["lo"], kind), _x(b["hi"], kind), b["count"]) for b in s["histogram"]]
            for s in (base, head)
        ]
    except (TypeError, ValueError):
        return None
    lo = min(a for side in sides for a, _, _ in side)
    hi = max(b for side in sides for _, b, _ in side)
    narrow = all(a == b for side in sides for a, b, _ in side)  # one bin a value
    pad = 0.5 if narrow else 0.0
    lo, hi = lo - pad, hi + pad
    width = (hi - lo) or 1.0
    shares = [[c / (sum(x for _, _, x in side) or 1) for _, _, c in side] for side in sides]
    tallest = max((s for side in shares for s in side), default=0) or 1
    out: dict[str, Any] = {
        "lo": base["min"] if _x(base["min"], kind) <= _x(head["min"], kind) else head["min"],
        "hi": base["max"] if _x(base["max"], kind) >= _x(head["max"], kind) else head["max"],
    }
    for name, side, share in zip(("base", "head"), sides, shares, strict=True):
        out[name] = [
            {
                "x": (a - pad - lo) / width,
                "w": max((b - a + 2 * pad) / width, 0.004),
                "h": s / tallest,
            }
            for (a, b, _), s in zip(side, share, strict=True)
        ]
    return out


def _x(v: Any, kind: str) -> float:
    """A statistic's value as a number on an axis (dates and datetimes as
    days and seconds)."""
    if kind == "date":
        return float(dt.date.fromisoformat(v).toordinal())
    if kind in {"datetime", "datetime_tz"}:
        return dt.datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()
    if kind == "time":
        t = dt.time.fromisoformat(v)
        return t.hour * 3600 + t.minute * 60 + t.second + t.microsecond / 1e6
    if kind == "duration":
        return parse_duration(v).total_seconds()
    return float(v)

"""Read copies of fragmented table versions: when they are made, read and
dropped (the copies themselves: ``core.layouts``; docs/decisions/0016).

- **Asked for when read whole.** The first whole read (an export) of a
  fragmented version without a copy asks for one (``for_reading``); a
  worker builds it (``layouts.build``), and later whole reads use it.
- **Following a branch.** When a branch moves (an import, merge, revert,
  fast-forward or reset), a fragmented new version of a table gets a copy
  built straight away (``follow``) if the table's version at the commit it
  left had one (a job that pulls the branch after every update reads each
  version at a fresh import's speed, without having asked first), or if
  the copy is small: at most ``DSA_LAYOUT_EAGER_BYTES`` (256 MiB, ~4M rows
  of the bench table; a second or two of a worker per 1M rows). So a
  branch's newest versions read as fast as fresh imports from their first
  whole read, page or compare on, and only a large table's copy waits to
  be asked for (unless the setting is raised: a copy built unasked for a
  35M-row version costs a worker ~50 s after each re-upload).
- **Bounded.** A copy of a version no ref points at any more (its branch
  moved on, no tag holds it) is deleted once it has not been read for
  ``EVICT_GRACE_S``, after each build and hourly (``sweep``): the copies
  follow the branches' heads, not their history. And the copies take at
  most ``DSA_LAYOUT_CACHE_BYTES`` of the object store (0: no copies). Past
  it, the least recently read copies not read for ``EVICT_GRACE_S`` are
  deleted after each build. A copy that
  would not fit in the whole budget is not built (estimated from the
  chunks' footers first): it would evict the rest, then be evicted, and
  be built again on the next read.

The ``layout`` table records each copy asked for or built, its size and its
last read; the object store holds the copies under ``layouts/``. A copy
that fails its check (``core.layouts.verify``) is deleted and asked for
again; reads never wait for one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psycopg
import structlog

from core import db
from core import layouts as copies
from core.config import get_settings
from core.lru import LRU
from core.objects import Manifest, get_commit, get_manifest, get_schema
from core.queue import enqueue
from core.storage import ObjectStore, get_store

log = structlog.get_logger(__name__)
Q = db.Queries(__file__)
REQUEST_STALE_S = 3600  # a build asked for this long ago and not done is asked for again
EVICT_GRACE_S = 600  # a copy read this recently is not evicted (a read may be under way)
SEEN_S = 10.0  # a copy found ready is used this long without asking the database again
_seen: LRU[str, tuple[copies.Copy, float]] = LRU(max_items=1024)


def enabled() -> bool:
    """Whether read copies are on (``DSA_LAYOUT_CACHE_BYTES`` > 0)."""
    return get_settings().layout_cache_bytes > 0


def applies(manifest: Manifest) -> bool:
    """Whether ``manifest`` may have a read copy (copies are on, and it is
    fragmented): the rest never needs a look in the database."""
    return enabled() and copies.fragmented(manifest)


def for_reading(
    conn: psycopg.Connection[Any],
    store: ObjectStore,
    manifest: Manifest,
    schema_id: str,
    *,
    ask: bool = True,
) -> copies.Copy | None:
    """``manifest``'s verified read copy, to read rows from; None when the
    table reads fast as it is, or has no copy yet (one is then asked for,
    unless ``ask`` is false: pages use a copy but do not ask)."""
    if not applies(manifest):
        return None
    copy, stale = _ready(conn, store, manifest.id)
    if copy is None and ask and stale:
        _request(conn, manifest, schema_id)
    return copy


def for_rows(
    conn: psycopg.Connection[Any], store: ObjectStore, manifest: Manifest, positions: np.ndarray
) -> copies.Copy | None:
    """``manifest``'s read copy to read the rows at ``positions`` from (a
    page of changes), checking only the parts that hold them: a fresh
    process's first page from a 1M-row copy checked all 8 parts' footers
    first (~5–9 ms) to read rows from one or two. Never asks for a copy."""
    if not applies(manifest):
        return None

    def check(copy: copies.Copy) -> bool:
        parts = np.unique(np.asarray(positions) // copy.part_rows).tolist()
        return copies.verify_parts(store, copy, parts)

    return _ready(conn, store, manifest.id, check)[0]


def ready(
    conn: psycopg.Connection[Any], store: ObjectStore, manifest_id: str
) -> copies.Copy | None:
    """The verified read copy of ``manifest_id`` if there is one, found
    without reading the manifest: a whole read of a version with a copy
    never decodes its pieces (1.4M of them, ~60 MB, for a 35M-row version
    re-uploaded once)."""
    return _ready(conn, store, manifest_id)[0] if enabled() else None


def _ready(
    conn: psycopg.Connection[Any],
    store: ObjectStore,
    manifest_id: str,
    check: Callable[[copies.Copy], bool] | None = None,
) -> tuple[copies.Copy | None, bool]:
    """The copy, if it passes ``check`` (default: ``copies.verify``, the
    whole copy), or None and whether a build should be asked for (none
    asked, or asked so long ago it went stale). A copy found ready is
    remembered for ``SEEN_S``: pages of changes and rows read it without two
    queries each (its reads are recorded at most once a minute anyway, and
    a copy read this recently is not evicted: ``EVICT_GRACE_S``)."""
    if check is None:
        check = functools.partial(copies.verify, store)
    seen = _seen.get(manifest_id)
    if seen is not None and time.monotonic() - seen[1] < SEEN_S and check(seen[0]):
        return seen[0], False
    _seen.pop(manifest_id)
    row = conn.execute(Q.get, {"manifest_id": manifest_id, "stale_s": REQUEST_STALE_S}).fetchone()
    if row is not None and row["state"] == "ready":
        copy = _copy(row)
        if check(copy):
            conn.execute(Q.touch, {"manifest_id": manifest_id})
            _seen.put(manifest_id, (copy, time.monotonic()))
            return copy, False
        log.warning("read copy missing or failed its check; deleted", manifest=manifest_id)
        _delete(conn, store, copy)
        row = None
    return None, row is None or bool(row["stale"])


def distrust(copy: copies.Copy) -> None:
    """A read of ``copy`` failed (a part missing or damaged after this process
    checked it): forget that it was checked and found ready, so the next
    read checks it whole, and deletes it and asks again if it fails."""
    _seen.pop(copy.manifest_id)
    copies.forget_check(copy)


def touch(copy: copies.Copy) -> None:
    """A read of ``copy`` goes on (a long download): keep it from eviction."""
    try:
        with db.transaction() as conn:
            conn.execute(Q.touch, {"manifest_id": copy.manifest_id})
    except Exception:  # a cache's bookkeeping must not end a download
        log.warning("could not record a read of a read copy", manifest=copy.manifest_id)


def _copy(row: dict[str, Any]) -> copies.Copy:
    return copies.Copy(
        row["manifest_id"], row["object_prefix"], row["row_count"], row["part_rows"], row["digest"]
    )


def _request(conn: psycopg.Connection[Any], manifest: Manifest, schema_id: str) -> None:
    params = {
        "manifest_id": manifest.id,
        "schema_id": schema_id,
        "row_count": manifest.row_count,
        "stale_s": REQUEST_STALE_S,
    }
    if conn.execute(Q.request, params).fetchone() is not None:
        db.after_commit(conn, lambda: _enqueue(manifest.id))


def _enqueue(manifest_id: str) -> None:
    """Send the build; if the broker is down, the request goes stale and the
    next whole read asks again."""
    _send("layouts.build", manifest_id)


def _send(task: str, *args: str) -> None:
    """Send ``task``; a broker that is down is logged, never raised (a cache
    must not fail a read or a write)."""
    try:
        enqueue(task, *args)
    except Exception:
        log.warning("could not send a read copies' task", task=task, args=args, exc_info=True)


def follow(conn: psycopg.Connection[Any], old: str, new: str) -> None:
    """A branch is moving from commit ``old`` to ``new`` in ``conn``'s
    transaction: once it has committed, a worker is asked to request read
    copies of the new, fragmented versions of its tables (``follow_move``).
    Nothing is read here: a merge's or reset's response and an import's
    landing never wait for it, and a cache must not hold a branch's lock
    longer or undo its move."""
    if enabled() and old != new:
        # if the broker is down, the next whole read asks instead
        db.after_commit(conn, lambda: _send("layouts.follow", old, new))


def follow_move(old: str, new: str) -> None:
    """Request read copies of the fragmented versions of commit ``new``'s
    tables that differ from commit ``old``'s (the task ``layouts.follow``):
    those whose version at ``old`` had one, and those whose copy would be
    small (see the module's docstring; tables new in ``new`` count as
    changed). Sizes are estimated from the chunks' footers outside any
    transaction. Never fails: a cache's bookkeeping must not."""
    try:
        store = get_store()
        before, after = get_commit(store, old).tables, get_commit(store, new).tables
        wanted: dict[str, tuple[Manifest, str]] = {}
        for name, entry in after.items():
            if name in before and before[name].manifest == entry.manifest:
                continue
            manifest = get_manifest(store, entry.manifest)
            if copies.fragmented(manifest):
                wanted[name] = (manifest, entry.schema)
        if not wanted:
            return
        ids = [before[name].manifest for name in wanted if name in before]
        with db.transaction() as conn:
            had = {r["manifest_id"] for r in conn.execute(Q.ready_among, {"ids": ids}).fetchall()}
        settings = get_settings()
        small = min(settings.layout_eager_bytes, settings.layout_cache_bytes)
        chosen = [
            (manifest, schema)
            for name, (manifest, schema) in wanted.items()
            if (name in before and before[name].manifest in had)
            or copies.estimated_bytes(store, manifest) <= small
        ]
        if chosen:
            with db.transaction() as conn:
                for manifest, schema in chosen:
                    _request(conn, manifest, schema)
    except Exception:
        log.warning("could not ask for read copies after a branch moved", commit=new, exc_info=True)


def build(manifest_id: str) -> int | None:
    """Build the read copy asked for (the task ``layouts.build``); its size,
    or None when there was nothing to do (built already, forgotten, or
    larger than the whole budget: see ``copies.estimated_bytes``).
    Then evict past the budget. No transaction is held while the copy is
    written (seconds to minutes); a copy that is no longer wanted once
    written (another build got there first) is deleted."""
    store = get_store()
    settings = get_settings()
    with db.transaction() as conn:
        row = conn.execute(Q.claim, {"manifest_id": manifest_id}).fetchone()
    if row is None:
        return None
    manifest = get_manifest(store, manifest_id)
    estimate = copies.estimated_bytes(store, manifest)
    if estimate > settings.layout_cache_bytes:
        # it would push every other copy out, then itself: not built. The
        # request stays, goes stale and is asked for again after
        # REQUEST_STALE_S: an estimate (footers only) an hour at most
        log.info(
            "read copy not built: larger than the budget",
            manifest=manifest_id,
            estimate=estimate,
            budget=settings.layout_cache_bytes,
        )
        return None
    schema = get_schema(store, row["schema_id"])
    copy, size = copies.write(store, manifest, schema, tmp_dir=settings.tmp_dir / "layouts")
    params = {
        "manifest_id": manifest_id,
        "object_prefix": copy.prefix,
        "part_rows": copy.part_rows,
        "digest": copy.digest,
        "bytes": size,
    }
    with db.transaction() as conn:
        kept = conn.execute(Q.built, params).fetchone() is not None
    if not kept:
        copies.delete(store, copy)
        return None
    log.info("read copy built", manifest=manifest_id, rows=manifest.row_count, bytes=size)
    evict(settings.layout_cache_bytes)
    return size


def evict(budget: int) -> int:
    """Delete the copies of versions no ref points at any more, then the
    least recently read copies until they fit in ``budget`` bytes (copies
    read in the last ``EVICT_GRACE_S`` stay either way); how many went."""
    store = get_store()
    gone = 0
    with db.transaction() as conn:
        for row in conn.execute(Q.superseded, {"grace_s": EVICT_GRACE_S}).fetchall():
            _delete(conn, store, _copy(row))
            gone += 1
        row = conn.execute(Q.total_bytes).fetchone()
        total = int(row["total"]) if row else 0
        if total > budget:
            for row in conn.execute(Q.least_used, {"grace_s": EVICT_GRACE_S}).fetchall():
                if total <= budget:
                    break
                _delete(conn, store, _copy(row))
                total -= row["bytes"] or 0
                gone += 1
    if gone:
        log.info("read copies evicted", count=gone, budget=budget)
    return gone


def sweep() -> int:
    """The periodic eviction (beat task ``layouts.evict``): a copy whose
    version a branch has moved on from goes even when no build runs."""
    if not enabled():
        return 0
    return evict(get_settings().layout_cache_bytes)


def _delete(conn: psycopg.Connection[Any], store: ObjectStore, copy: copies.Copy) -> None:
    """Forget the copy first (no new reader finds it), then delete its parts."""
    _seen.pop(copy.manifest_id)
    conn.execute(Q.forget, {"manifest_id": copy.manifest_id})
    copies.delete(store, copy)


def in_use(conn: psycopg.Connection[Any]) -> tuple[set[str], set[str]]:
    """What of ``layouts/`` garbage collection keeps: the prefixes of the
    copies recorded, and the manifests whose copy is being built (any
    prefix of theirs: a build names its prefix only when done)."""
    prefixes, building = set(), set()
    for row in conn.execute(Q.in_use):
        if row["object_prefix"]:
            prefixes.add(row["object_prefix"])
        if row["state"] == "building":
            building.add(row["manifest_id"])
    return prefixes, building

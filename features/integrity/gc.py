"""``dsa gc``: reclaim what nothing needs any more (issue 14; decision 0024).

Mark, then sweep, like git's ``gc --prune=<grace>``:

1. **Cutoff.** The time before which an unreferenced object may go: the
   grace period (``DSA_GC_GRACE``, 24 h) before the earliest of now, the
   oldest write hold (a merge, revert or stored export writing objects it
   has not recorded yet, ``core.holds``) and the oldest queued or running
   import (its partial outputs). Whatever was written since is kept, so a
   writer at work while gc runs never loses an object. A writer that finds
   an object it would write already stored rewrites it when that copy is
   older than ``core.storage.REFRESH_AFTER_S``, so what it relies on is
   never older than the cutoff either.
2. **Database.** Datasets soft-deleted longer than ``DSA_DELETED_RETENTION``
   are purged; reflog entries older than ``DSA_REFLOG_RETENTION`` expire;
   commits that no ref, retained reflog entry or reachable commit reaches
   are pruned (each dataset in one statement; a ref moved onto one
   meanwhile makes it fail, and the dataset is left for the next run).
3. **Mark.** From every commit left: its object, its tables' schemas and
   manifests, the chunks the manifests name; the line indexes of the
   branches; the read copies recorded; the stored exports of commits that
   exist, most recently used first within ``DSA_EXPORT_CACHE_BYTES``.
4. **Sweep.** Every object of every kind listed from the store that is
   unmarked and older than the cutoff, looked at again just before it is
   deleted (a writer may have refreshed it); temporary files of writes cut
   off before the cutoff; stored uploads no job needs, after
   ``DSA_TMP_RETENTION_S`` (``imports.clean_uploads``).

One gc runs at a time, and no fsck beside it (a PostgreSQL advisory lock:
gc takes it exclusively, fsck shared; the other refuses with a clear
message). ``dry_run`` reports what would go and changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
import structlog

from core import db, failpoints, holds, metrics
from core.config import get_settings
from core.errors import StoredObjectError
from core.objects import get_manifest
from core.storage import ObjectStore, get_store
from features.commits import service as commits_service
from features.datasets import service as datasets_service
from features.exports import service as exports_service
from features.imports import service as imports_service
from features.integrity.errors import GcBusy, GraceTooShort
from features.jobs import service as jobs_service
from features.layouts import service as layouts_service
from features.refs import service as refs_service

log = structlog.get_logger(__name__)

MIN_GRACE_S = 600.0  # a shorter grace needs force (tests)
LOCK_KEY = 0x64_73_61_67_63  # "dsagc": the advisory lock gc holds exclusively, fsck shared
KINDS = (
    "commits",
    "schemas",
    "manifests",
    "chunks",
    "chunkstats",
    "lines",
    "layouts",
    "exports",
)


@dataclass
class GcReport:
    dry_run: bool
    cutoff: str = ""
    deleted_objects: int = 0
    freed_bytes: int = 0
    kept_objects: int = 0
    by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    purged_datasets: int = 0
    expired_reflog: int = 0
    pruned_commits: int = 0
    evicted_exports: int = 0
    uploads_removed: int = 0
    partial_writes_removed: int = 0
    unreadable_manifests: list[str] = field(default_factory=list)  # no chunk swept then
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "deleted_objects": self.deleted_objects,
            "freed_bytes": self.freed_bytes,
            "kept_objects": self.kept_objects,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "dry_run": self.dry_run,
            "cutoff": self.cutoff,
            "by_kind": self.by_kind,
            "purged_datasets": self.purged_datasets,
            "expired_reflog": self.expired_reflog,
            "pruned_commits": self.pruned_commits,
            "evicted_exports": self.evicted_exports,
            "uploads_removed": self.uploads_removed,
            "partial_writes_removed": self.partial_writes_removed,
            "unreadable_manifests": self.unreadable_manifests,
            "seconds": round(self.seconds, 3),
        }


@contextmanager
def locked(*, exclusive: bool, what: str) -> Iterator[None]:
    """Hold the gc lock (gc: exclusive; fsck: shared) for the block, or raise
    ``GcBusy``. A session lock on a connection of its own: a process that
    dies frees it with its connection."""
    fn = "pg_try_advisory_lock" if exclusive else "pg_try_advisory_lock_shared"
    with db.read() as conn:
        row = conn.execute(f"SELECT {fn}(%(k)s) AS ok", {"k": LOCK_KEY}).fetchone()
        if not (row and row["ok"]):
            other = "an fsck or another gc" if exclusive else "a gc"
            raise GcBusy(f"{other} is running; {what} can start when it ends")
        try:
            yield
        finally:
            unlock = "pg_advisory_unlock" if exclusive else "pg_advisory_unlock_shared"
            conn.execute(f"SELECT {unlock}(%(k)s)", {"k": LOCK_KEY})


def check_grace(grace_s: float, force: bool) -> None:
    if grace_s < 0:
        raise GraceTooShort("the grace period cannot be negative")
    if grace_s < MIN_GRACE_S and not force:
        raise GraceTooShort(
            f"a grace period under {int(MIN_GRACE_S)} seconds could delete what a running "
            "import has written but not yet recorded; pass force to insist"
        )


def gc(
    *,
    grace_s: float | None = None,
    dry_run: bool = False,
    force: bool = False,
    alive: Callable[[GcReport], None] | None = None,
) -> GcReport:
    """Collect garbage (see the module docstring); ``alive`` is told how far
    it got now and then (a job's heartbeat; it may raise to stop)."""
    settings = get_settings()
    grace = settings.gc_grace if grace_s is None else float(grace_s)
    check_grace(grace, force)
    started = time.monotonic()
    report = GcReport(dry_run=dry_run)
    with locked(exclusive=True, what="gc"):
        _Run(get_store(), report, dry_run, alive or (lambda r: None)).run(grace)
    report.seconds = time.monotonic() - started
    metrics.GC_RUNS.labels(str(dry_run).lower()).inc()
    if not dry_run:
        metrics.GC_FREED.inc(report.freed_bytes)
        metrics.GC_DELETED.inc(report.deleted_objects)
    log.info("gc done", **report.to_json())
    return report


@dataclass
class _Run:
    store: ObjectStore
    report: GcReport
    dry_run: bool
    alive: Callable[[GcReport], None]
    marked: set[str] = field(default_factory=set)
    evicted: set[str] = field(default_factory=set)  # counted already (a dry run's)
    sizes: dict[str, int] = field(default_factory=dict)  # objects kept, by key
    unreadable: list[str] = field(default_factory=list)  # kept manifests that could not be read
    # storage accounting: each dataset's commit keys and manifests
    owned: dict[Any, tuple[set[str], set[str], datetime]] = field(default_factory=dict)
    manifest_chunks: dict[str, tuple[str, ...]] = field(default_factory=dict)
    layout_building: set[str] = field(default_factory=set)

    def run(self, grace: float) -> None:
        settings = get_settings()
        with db.transaction() as conn:
            now = conn.execute("SELECT now() AS now").fetchone()["now"]  # type: ignore[index]
            firsts = [now, holds.oldest(conn), jobs_service.oldest_writer(conn)]
        cutoff = min(t for t in firsts if t is not None) - timedelta(seconds=grace)
        self.report.cutoff = cutoff.isoformat()
        reflog_since = now - timedelta(seconds=settings.reflog_retention)
        if not self.dry_run:
            self._database(settings.deleted_retention, reflog_since)
        live = self._mark(reflog_since)
        self._exports(live, settings.export_cache_bytes, cutoff)
        failpoints.hit("gc_marked")
        self._sweep(cutoff.timestamp())
        if not self.dry_run:
            self._account()
            self.report.uploads_removed = imports_service.clean_uploads(settings.tmp_retention_s)

    # -- the database ------------------------------------------------------------

    def _database(self, deleted_retention: float, reflog_since: datetime) -> None:
        with db.transaction() as conn:
            purged = datasets_service.purge_deleted(conn, deleted_retention)
            self.report.purged_datasets = len(purged)
            self.report.expired_reflog = refs_service.expire_log(conn, reflog_since)
        for ds in purged:
            log.info("deleted dataset purged", dataset=ds["name"], id=str(ds["id"]))

    def _reachable(
        self, conn: psycopg.Connection[Any], ds: dict[str, Any], reflog_since: datetime
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The dataset's commits that are kept, and those that are not."""
        commits = commits_service.every(conn, ds["id"])
        by_id = {c["id"]: c for c in commits}
        todo = [r["commit_id"] for r in refs_service.list_refs(conn, ds["id"])]
        todo += refs_service.retained_commits(conn, ds["id"], reflog_since)
        seen: set[str] = set()
        while todo:
            cid = todo.pop()
            if cid in seen or cid not in by_id:
                continue
            seen.add(cid)
            todo.extend(by_id[cid]["parents"])
        return [by_id[c] for c in seen], [r for c, r in by_id.items() if c not in seen]

    # -- mark ----------------------------------------------------------------------

    def _mark(self, reflog_since: datetime) -> set[tuple[Any, str]]:
        """Mark what the database references; the (dataset, commit) pairs kept."""
        live: set[tuple[Any, str]] = set()
        manifests: set[str] = set()
        with db.read() as conn:
            datasets = datasets_service.every(conn)
        for ds in datasets:
            with db.transaction() as conn:
                read_at = conn.execute("SELECT now() AS at").fetchone()["at"]  # type: ignore[index]
                kept, unreachable = self._reachable(conn, ds, reflog_since)
                if unreachable and not self.dry_run:
                    pruned = self._prune(conn, ds, [c["id"] for c in unreachable])
                    if pruned is None:  # not pruned after all: their objects stay this time
                        kept += unreachable
                    else:
                        self.report.pruned_commits += pruned
                refs = refs_service.list_refs(conn, ds["id"])
            self.alive(self.report)
            tables_of = {}
            own_keys, own_manifests, _ = self.owned.setdefault(ds["id"], (set(), set(), read_at))
            for c in kept:
                live.add((ds["id"], c["id"]))
                own_keys.add(f"commits/{c['id']}")
                tables_of[c["id"]] = c["tables"] or {}
                for t in (c["tables"] or {}).values():
                    own_keys.add(f"schemas/{t['schema']}")
                    own_manifests.add(t["manifest"])
            self.marked |= own_keys
            manifests |= own_manifests
            for ref in refs:
                if ref["kind"] == "branch":
                    for table in tables_of.get(ref["commit_id"], {}):
                        key = imports_service.line_index_key(ds["id"], ref["name"], table)
                        self.marked.add(key)
        for mid in manifests:
            self.marked.add(f"manifests/{mid}")
            try:
                chunks = get_manifest(self.store, mid).columns.chunks
            except StoredObjectError:
                # missing or damaged (fsck's to report): which chunks it needs is
                # unknown, so no chunk is swept this time
                self.unreadable.append(f"manifests/{mid}")
                continue
            self.manifest_chunks[mid] = tuple(f"chunks/{c}" for c in chunks)
            self.marked.update(self.manifest_chunks[mid])
            self.alive(self.report)
        with db.read() as conn:
            prefixes, self.layout_building = layouts_service.in_use(conn)
        self.marked.update(prefixes)
        return live

    def _prune(
        self, conn: psycopg.Connection[Any], ds: dict[str, Any], ids: list[str]
    ) -> int | None:
        """How many went; None when none did (a ref moved onto one meanwhile)."""
        try:
            with conn.transaction():
                return commits_service.prune(conn, ds["id"], ids)
        except psycopg.errors.ForeignKeyViolation:
            log.info("gc left a dataset's commits: a ref moved onto one", dataset=ds["name"])
            return None

    def _exports(self, live: set[tuple[Any, str]], budget: int, cutoff: datetime) -> None:
        """Mark stored exports of commits kept, most recently used first, within
        the budget. One stored or read since the cutoff stays whatever else
        holds (its commit may have landed while gc ran; a reader may be
        fetching its ranges), even past the budget."""
        with db.read() as conn:
            rows = exports_service.stored_exports(conn)
        total = 0
        for row in reversed(rows):  # most recently used first
            recent = row["used_at"] >= cutoff
            fits = total + row["bytes"] <= budget
            if recent or ((row["dataset_id"], row["commit_id"]) in live and fits):
                total += row["bytes"]
                self.marked.add(row["key"])
                continue
            self.report.evicted_exports += 1
            self.evicted.add(row["key"])
            if not self.dry_run:
                with db.transaction() as conn:
                    exports_service.forget_stored(conn, row["key"])
                self._delete(row["key"], "exports", row["bytes"])
            else:
                self._count("exports", "deleted", row["bytes"])

    # -- sweep ---------------------------------------------------------------------

    def _kept(self, key: str) -> bool:
        if key in self.marked:
            return True
        if key.startswith("chunkstats/"):  # a chunk's statistics' state lives as long as it
            return f"chunks/{key.removeprefix('chunkstats/')}" in self.marked
        if key.startswith("layouts/"):
            prefix = key.split("/", 2)[1]
            return (
                f"layouts/{prefix}" in self.marked
                or prefix.rsplit("-", 1)[0] in self.layout_building
            )
        return False

    def _sweep(self, cutoff: float) -> None:
        if self.unreadable:
            log.error(
                "gc swept no chunk: manifests of kept commits could not be read (run dsa fsck)",
                manifests=self.unreadable[:20],
            )
            self.report.unreadable_manifests = self.unreadable[:100]
        for kind in KINDS:
            if kind in ("chunks", "chunkstats") and self.unreadable:
                for obj in self.store.list(kind):
                    self._count(kind, "kept", obj.size)
                    self.sizes[obj.key] = obj.size
                continue
            for n, obj in enumerate(self.store.list(kind)):
                if n % 500 == 0:
                    self.alive(self.report)  # a heartbeat while listing millions
                if obj.key in self.evicted:
                    continue
                if self._kept(obj.key) or obj.modified >= cutoff:
                    self._count(kind, "kept", obj.size)
                    self.sizes[obj.key] = obj.size
                    continue
                if not self.dry_run:
                    again = self.store.stat(obj.key)  # a writer may have refreshed it
                    if again is None or again.modified >= cutoff:
                        self._count(kind, "kept", obj.size)
                        continue
                self._delete(obj.key, kind, obj.size)
                failpoints.hit("gc_sweeping")
            if not self.dry_run:
                self.report.partial_writes_removed += self.store.clean_partial(
                    kind, max(time.time() - cutoff, 0.0)
                )

    def _account(self) -> None:
        """Each dataset's storage accounting, exact: the objects its kept
        commits reference, with their sizes as listed."""
        for ds_id, (keys, manifests, read_at) in self.owned.items():
            mine = set(keys)
            for mid in manifests:
                mine.add(f"manifests/{mid}")
                mine.update(self.manifest_chunks.get(mid, ()))
            sizes = {k: self.sizes[k] for k in mine if k in self.sizes}
            self.alive(self.report)
            try:
                with db.transaction() as conn:
                    commits_service.set_objects(conn, ds_id, sizes, read_at)
            except psycopg.errors.ForeignKeyViolation:
                continue  # the dataset was purged meanwhile

    def _delete(self, key: str, kind: str, size: int) -> None:
        if not self.dry_run:
            self.store.delete(key)
        self._count(kind, "deleted", size)

    def _count(self, kind: str, what: str, size: int) -> None:
        k = self.report.by_kind.setdefault(
            kind, {"kept": 0, "deleted": 0, "kept_bytes": 0, "deleted_bytes": 0}
        )
        k[what] += 1
        k[f"{what}_bytes"] += size
        if what == "kept":
            self.report.kept_objects += 1
        else:
            self.report.deleted_objects += 1
            self.report.freed_bytes += size

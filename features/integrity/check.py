"""``dsa fsck``: is what is stored whole? (issue 14; decision 0023)

From the database down, every dataset (or one): each ref points at a
commit whose object exists; each commit's object hashes to its id and says
what its row says (parents, tables); each table's schema and manifest exist
and hash to their ids, the manifest holds the commit's row count, and its
pieces lie within their chunks; each chunk is a readable Parquet file whose
row hashes hash to its id, and with ``deep``, whose rows re-hash to their
stored hashes. Every object is checked once, however many commits share it,
read afresh from the store (``core.verify``), at most ``DSA_FSCK_BYTES_PER_S``
a second. Problems go to ``emit`` one at a time as they are found; memory
holds one id a distinct object, not the objects.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import structlog

from core import db, metrics
from core.config import get_settings
from core.objects import Commit, Manifest, Schema
from core.storage import ObjectStore, get_store, uncached
from core.verify import Checked, check_chunk, check_object
from features.commits import service as commits_service
from features.datasets import service as datasets_service
from features.datasets.errors import DatasetNotFound
from features.integrity.gc import locked
from features.refs import service as refs_service

log = structlog.get_logger(__name__)
MAX_REPORTED = 1000  # problems a job's result lists (the summary counts them all)


@dataclass(frozen=True)
class Problem:
    kind: str  # missing_object, corrupt_object, bad_ref, bad_commit, bad_manifest
    detail: str
    key: str | None = None
    dataset: str | None = None
    ref: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class Report:
    objects_checked: int = 0
    bytes_read: int = 0
    problems: int = 0
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        return {"objects_checked": self.objects_checked, "problems": self.problems}


@dataclass
class _Chunk:
    """What the manifests need of a chunk: rows up to ``end``; a schema to re-hash it by."""

    end: int
    manifest: str
    dataset: str
    schema: str


@dataclass
class _Run:
    store: ObjectStore
    deep: bool
    emit: Callable[[Problem], None]
    report: Report = field(default_factory=Report)
    objects: dict[str, Checked] = field(default_factory=dict)  # "kind/id" → as found
    chunks: dict[str, _Chunk] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    rate: int = 0
    alive: Callable[[Report], None] | None = None

    def problem(self, p: Problem) -> None:
        self.report.problems += 1
        self.emit(p)

    def read(self, n: int) -> None:
        """Count ``n`` bytes read; sleep while reading faster than the rate."""
        self.report.bytes_read += n
        if self.alive is not None:
            self.alive(self.report)
        if self.rate > 0:
            ahead = self.report.bytes_read / self.rate - (time.monotonic() - self.started)
            if ahead > 0:
                time.sleep(ahead)

    def object(self, kind: str, oid: str, dataset: str) -> Schema | Manifest | Commit | None:
        """The checked object (each checked once); None, with a problem, when bad."""
        key = f"{kind}s/{oid}"
        got = self.objects.get(key)
        if got is None:
            got = check_object(self.store, kind, oid)
            self.report.objects_checked += 1
            self.read(got.bytes_read)
            # keep a verdict, not the object: commits and schemas are small,
            # manifests are looked at once, where they are first met
            self.objects[key] = Checked(None if kind == "manifest" else got.value, 0, got.problem)
            if got.problem:
                missing = got.problem == "missing"
                self.problem(
                    Problem(
                        "missing_object" if missing else "corrupt_object",
                        f"{kind} {got.problem}",
                        key=key,
                        dataset=dataset,
                    )
                )
            return got.value
        return got.value if kind != "manifest" else None


def fsck(
    *,
    deep: bool = False,
    dataset: str | None = None,
    emit: Callable[[Problem], None],
    alive: Callable[[Report], None] | None = None,
) -> Report:
    """Check the stored data (see the module docstring); problems to
    ``emit``; ``alive`` is told how far it got after each object (a job's
    heartbeat; it may raise to stop the check). The store is read without
    the node's cache: what the bucket holds, not what this node kept."""
    run = _Run(uncached(get_store()), deep, emit, rate=get_settings().fsck_bytes_per_s)
    run.alive = alive
    with locked(exclusive=False, what="fsck"), db.read() as conn:  # no gc meanwhile
        datasets = datasets_service.every(conn, dataset)
        if dataset is not None and not datasets:
            raise DatasetNotFound(f"no dataset is named or has the id {dataset!r}")
        for ds in datasets:
            refs = refs_service.list_refs(conn, ds["id"])
            commits = commits_service.every(conn, ds["id"])
            _dataset(run, ds["name"], refs, commits)
        _chunks(run)
    run.report.seconds = time.monotonic() - run.started
    if dataset is None:  # a check of the whole installation
        metrics.FSCK_PROBLEMS.set(run.report.problems)
    return run.report


def _dataset(
    run: _Run, name: str, refs: list[dict[str, Any]], commits: list[dict[str, Any]]
) -> None:
    ids = {c["id"] for c in commits}
    for ref in refs:
        if ref["commit_id"] not in ids:
            run.problem(
                Problem(
                    "bad_ref",
                    f"points at {ref['commit_id']}, not a commit of the dataset",
                    dataset=name,
                    ref=ref["name"],
                )
            )
        elif run.object("commit", ref["commit_id"], name) is None:
            run.problem(
                Problem(
                    "bad_ref",
                    f"its commit {ref['commit_id']} is missing or damaged",
                    dataset=name,
                    ref=ref["name"],
                )
            )
    for row in commits:
        _commit(run, name, row, ids)


def _commit(run: _Run, name: str, row: dict[str, Any], ids: set[str]) -> None:
    cid = row["id"]
    commit = run.object("commit", cid, name)
    if not isinstance(commit, Commit):
        return
    key = f"commits/{cid}"
    if list(commit.parents) != list(row["parents"]):
        run.problem(
            Problem("bad_commit", "its parents differ from the database's", key=key, dataset=name)
        )
    for parent in commit.parents:
        if parent not in ids:
            run.problem(
                Problem(
                    "bad_commit",
                    f"parent {parent} is not a commit of the dataset",
                    key=key,
                    dataset=name,
                )
            )
    recorded = {n: (t["schema"], t["manifest"]) for n, t in (row["tables"] or {}).items()}
    if recorded != {n: (t.schema, t.manifest) for n, t in commit.tables.items()}:
        run.problem(
            Problem("bad_commit", "its tables differ from the database's", key=key, dataset=name)
        )
    if sum(t.row_count for t in commit.tables.values()) != row["row_count"]:
        run.problem(
            Problem(
                "bad_commit", "its row count differs from the database's", key=key, dataset=name
            )
        )
    for table, entry in sorted(commit.tables.items()):
        run.object("schema", entry.schema, name)
        mkey = f"manifests/{entry.manifest}"
        if mkey in run.objects:
            continue  # checked where first met
        manifest = run.object("manifest", entry.manifest, name)
        if isinstance(manifest, Manifest):
            _manifest(run, name, table, entry.row_count, entry.schema, manifest)


def _manifest(run: _Run, name: str, table: str, rows: int, schema: str, manifest: Manifest) -> None:
    key = f"manifests/{manifest.id}"
    if manifest.row_count != rows:
        run.problem(
            Problem(
                "bad_manifest",
                f"table {table!r} holds {manifest.row_count} rows, its commit says {rows}",
                key=key,
                dataset=name,
            )
        )
    cols = manifest.columns
    if len(cols.length) == 0:
        return
    ends = cols.start + cols.length
    bad = (cols.start < 0) | (cols.length <= 0)
    if bad.any():
        run.problem(
            Problem("bad_manifest", f"{int(bad.sum())} pieces have no rows", key=key, dataset=name)
        )
    if len(cols.chunk) and (cols.chunk.min() < 0 or cols.chunk.max() >= len(cols.chunks)):
        run.problem(
            Problem("bad_manifest", "pieces name chunks it does not list", key=key, dataset=name)
        )
        return
    reach = np.zeros(len(cols.chunks), dtype=np.int64)  # the last row each chunk must hold
    np.maximum.at(reach, cols.chunk, ends)
    for cid, end in zip(cols.chunks, reach.tolist(), strict=True):
        seen = run.chunks.get(cid)
        if seen is None:
            run.chunks[cid] = _Chunk(end, manifest.id, name, schema)
        elif end > seen.end:
            seen.end, seen.manifest, seen.dataset = end, manifest.id, name


def _chunks(run: _Run) -> None:
    schemas: dict[str, Any] = {}
    for cid, need in run.chunks.items():
        columns = None
        if run.deep:
            schema = run.objects.get(f"schemas/{need.schema}")
            if schema is not None and isinstance(schema.value, Schema):
                columns = schemas.setdefault(need.schema, list(schema.value.columns))
        got = check_chunk(run.store, cid, columns)
        run.report.objects_checked += 1
        run.read(got.bytes_read)
        key = f"chunks/{cid}"
        if got.problem:
            kind = "missing_object" if got.problem == "missing" else "corrupt_object"
            run.problem(Problem(kind, f"chunk {got.problem}", key=key, dataset=need.dataset))
        elif got.rows < need.end:
            run.problem(
                Problem(
                    "bad_manifest",
                    f"pieces reach row {need.end} of chunk {cid}, which holds {got.rows}",
                    key=f"manifests/{need.manifest}",
                    dataset=need.dataset,
                )
            )

"""Land: the built tables become a commit on the branch, with the job's success.

``land`` writes the commit through the one landing path
(``refs_service.land``: record it, move the branch by compare-and-swap from
the head the import built on, in one short transaction) and marks the job
succeeded in that same transaction. When another writer moved the branch
first, ``rebase_table`` rebuilds an append on the new head without reading
the file again where it can (``pipeline`` decides whether to rebase at all).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import psycopg

from core import db
from core.errors import DsaError
from core.objects import (
    Commit,
    Manifest,
    Schema,
    TableEntry,
    commit_time,
    get_manifest,
    get_schema,
    put_object,
)
from core.schema import Column
from core.storage import ObjectStore
from features.auth import service as auth_service
from features.compare import service as compare_service
from features.datasets import service as datasets_service
from features.imports.build import TableBuild
from features.imports.context import ImportJob
from features.imports.errors import JobCancelled, NoLongerAllowed
from features.jobs import service as jobs_service
from features.quality import service as quality_service
from features.refs import service as refs_service
from features.refs.errors import RefConflict

IMPORTER = "dsa.import/1"


def land(
    job: ImportJob,
    source: dict[str, Any],
    head: str,
    parent: Commit,
    built: dict[str, TableBuild],
    rebases: int,
) -> bool:
    """Commit the tables on ``head`` and move the branch there by
    compare-and-swap, in one transaction with the job's success; False when
    the branch is no longer at ``head`` (nothing is then recorded)."""
    tables = dict(parent.tables)
    results = []
    for name, table in built.items():
        tables[name] = table.entry
        results.append({"table": name, **table.result})
    rows = sum(r["rows"] for r in results)
    result: dict[str, Any] = (
        dict(results[0]) if len(results) == 1 else {"rows": rows, "tables": results}
    )
    if rebases:
        result["rebases"] = rebases
    for key in ("not_modified", "etag", "last_modified"):  # a schedule's run
        if key in source:  # a download without validators clears the last ones
            result[key] = source[key]
    done = {"rows": rows, "bytes_read": source["size"]}

    def running(conn: psycopg.Connection[Any]) -> None:
        if not jobs_service.still_running(conn, job.id, job.attempts):
            raise JobCancelled  # cancelled, or claimed again meanwhile: nothing is recorded
        _author_may_write(conn, job)

    def succeed(conn: psycopg.Connection[Any], commit_id: str) -> None:
        jobs_service.succeed(conn, job.id, commit_id=commit_id, result=result, **done)
        for name, table in built.items():
            before = parent.tables.get(name)
            if table.disjoint and before is not None and job.request.mode == "replace":
                compare_service.remember_disjoint(
                    conn, job.dataset_id, before.manifest, table.entry.manifest
                )

    if tables == parent.tables:
        # nothing to commit; still, the file's table is what the branch holds
        # only if the branch is still where the import read it
        with db.transaction() as conn:
            running(conn)
            moved = refs_service.get_branch(conn, job.dataset_id, job.branch)["commit_id"] != head
            # a schedule's file not modified since it matched ``head``: done,
            # wherever the branch went since (the next run compares afresh)
            if moved and not source.get("not_modified"):
                return False
            jobs_service.succeed(
                conn, job.id, commit_id=head, result={**result, "unchanged": True}, **done
            )
        return True
    request = job.request
    commit = _commit(job, source, head, tables, built)
    # a gated branch takes no commit below its quality threshold: the job
    # fails with quality_gate_failed and the branch stays
    quality_service.require_gate(job.dataset_id, job.branch, commit)
    try:
        refs_service.land(
            dataset_id=job.dataset_id,
            branch=job.branch,
            commit=commit,
            by=request.author,
            reason=f"import ({request.mode}) of {source['file_name']}"
            + (f", rebased {rebases}x" if rebases else ""),
            before=running,
            then=succeed,
        )
    except RefConflict:
        return False  # the transaction rolled back: no commit row, no ref move
    return True


def _author_may_write(conn: psycopg.Connection[Any], job: ImportJob) -> None:
    """The job's author still holds write on a live dataset, checked in the
    landing transaction: a job that waited in the queue while its author's
    role was revoked, or the dataset deleted, does not land."""
    user = auth_service.user_by_id(conn, job.created_by) if job.created_by else None
    try:
        datasets_service.require_branch(conn, user, job.dataset_id, job.branch)
    except DsaError as exc:
        raise NoLongerAllowed(
            f"the import did not land: its author can no longer write to the dataset ({exc.detail})"
        ) from None


def _commit(
    job: ImportJob,
    source: dict[str, Any],
    head: str,
    tables: dict[str, TableEntry],
    built: dict[str, TableBuild],
) -> Commit:
    """The commit of an import; its time is the job's creation time, so a
    retried import makes the same commit."""
    request = job.request
    names = list(built)
    dialects = {name: table.dialect for name, table in built.items()}
    return Commit(
        parents=(head,),
        tables=tables,
        author=request.author,
        created_at=commit_time(job.created_at),
        message=request.message or f"Import {source['file_name']}",
        provenance={
            "source": source,
            "table": names[0] if len(names) == 1 else names,
            "mode": request.mode,
            "format": request.format,
            "dialect": dialects[names[0]] if len(names) == 1 else dialects,
            "options": request.options,
            "importer": IMPORTER,
            "dsa_version": _version(),
            "job_id": str(job.id),
        },
    )


def rebase_table(
    store: ObjectStore,
    mode: str,
    built: TableBuild,
    base: TableEntry | None,
    onto: TableEntry | None,
) -> TableBuild | None:
    """The table the import ``built`` on ``base``, rebuilt on the new head's
    version ``onto`` without reading the file again; None when only a re-run of
    the import can tell (an upsert onto a changed table, an append onto a table
    whose columns changed)."""
    if onto == base:
        return built  # the other writer left this table alone
    if mode != "append" or onto is None:
        return None
    ours = get_schema(store, built.entry.schema)
    theirs = get_schema(store, onto.schema)
    if [(c.name, c.type) for c in ours.columns] != [(c.name, c.type) for c in theirs.columns]:
        return None  # read again with the table's new types (or fail with schema_mismatch)
    # the file's pieces, and whether each column may be null in the table: an
    # append built the table's pieces then the file's, and ORed their nullability
    pieces = get_manifest(store, built.entry.manifest).pieces
    known = [True] * len(ours.columns)  # our nullable flag is the file's own
    if base is not None:
        before = get_manifest(store, base.manifest).pieces
        if pieces[: len(before)] != before:
            return None
        pieces = pieces[len(before) :]
        known = [not c.nullable for c in get_schema(store, base.schema).columns]
    nullable = []
    for o, t, k in zip(ours.columns, theirs.columns, known, strict=True):
        if not t.nullable and not k:
            return None  # whether the file's rows hold nulls there is not recorded
        nullable.append(t.nullable or o.nullable)
    schema = Schema(
        tuple(Column(c.name, c.type, n) for c, n in zip(theirs.columns, nullable, strict=True))
    )
    manifest = Manifest(tuple(get_manifest(store, onto.manifest).pieces) + tuple(pieces))
    put_object(store, "schema", schema)
    put_object(store, "manifest", manifest)
    total = onto.row_count + built.result["rows"]
    entry = TableEntry(schema=schema.id, manifest=manifest.id, row_count=total)
    return TableBuild(entry, {**built.result, "table_rows": total}, built.dialect)


def _version() -> str:
    try:
        return version("dsa")
    except PackageNotFoundError:
        return "0+unknown"

"""``dsa gc`` (issue 14) on the session's installation: what nothing
references goes once older than the cutoff, and nothing a ref, a retained
reflog entry, a deleted dataset inside its retention or a running writer
needs ever does. The sweeps here use short grace periods (forced), so they
also sweep what earlier tests of the session left unreferenced: every
dataset they touch must still check clean and read back equal."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import polars as pl
import pytest

from core import db
from core.storage import LocalStore, get_store
from features.integrity import service
from features.integrity.errors import GcBusy, GraceTooShort
from tests.conftest import ROOT, import_csv, make_dataset, upload, wait_job

ROWS = 2000


def _csv(rows: int = ROWS, edit: int | None = None, tag: str = "") -> bytes:
    lines = [b"id,name,score"]
    for i in range(rows):
        name = f"edited{tag}" if edit is not None and i % edit == 0 else f"n{i}"
        lines.append(f"{i},{name},{i % 97}.5".encode())
    return b"\n".join(lines) + b"\n"


def _old_object(key: str, data: bytes, age_s: float) -> None:
    store = get_store()
    assert isinstance(store, LocalStore)
    store.put(key, data)
    when = time.time() - age_s
    os.utime(store._path(key), (when, when))  # noqa: SLF001


def _dsa(stack: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The command, against the session's installation."""
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env={**os.environ, **stack},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _exists(key: str) -> bool:
    return get_store().exists(key)


def _rows_at(client: Any, admin: dict[str, str], ds: str, ref: str) -> pl.DataFrame:
    r = client.get(f"/api/v1/datasets/{ds}/refs/{ref}/export?format=csv", headers=admin)
    assert r.status_code == 200, r.text
    return pl.read_csv(io.BytesIO(r.content))


def _clean(name: str, deep: bool = True) -> None:
    found: list[service.Problem] = []
    report = service.fsck(deep=deep, dataset=name, emit=found.append)
    assert found == [] and report.problems == 0, found


def _a_chunk_state(commit_id: str) -> str:
    from core.objects import get_commit, get_manifest
    from features.stats import pieces

    store = get_store()
    (entry,) = get_commit(store, commit_id).tables.values()
    key = pieces.state_key(get_manifest(store, entry.manifest).pieces[0].chunk)
    assert store.exists(key), "the import kept a state beside the chunk"
    return key


def test_orphans_go_and_everything_referenced_stays(
    client: Any, admin: dict[str, str], worker: Any
) -> None:
    ds = make_dataset(client, admin)
    v1, v2 = _csv(), _csv(edit=10)
    jobs = [import_csv(client, admin, ds["id"], body) for body in (v1, v2)]
    assert all(j["state"] == "succeeded" for j in jobs), jobs
    export = client.get(
        f"/api/v1/datasets/{ds['id']}/refs/{jobs[0]['commit_id']}/export?format=parquet",
        headers=admin,
    )
    assert export.status_code == 200
    day = 86_400.0
    junk = {
        f"chunks/{uuid.uuid4().hex * 2}": b"an orphan chunk",
        f"manifests/{uuid.uuid4().hex * 2}": b"an orphan manifest",
        f"lines/{uuid.uuid4().hex[:40]}": b"a line index of a branch long gone",
        f"layouts/{uuid.uuid4().hex * 2}-0123456789abcdef/0": b"a read copy's stray part",
        f"exports/{uuid.uuid4().hex * 2}": b"a stored export nobody recorded",
        f"chunkstats/{uuid.uuid4().hex * 2}": b"the statistics' state of a chunk long gone",
    }
    for key, data in junk.items():
        _old_object(key, data, day)
    # a kept chunk's statistics' state, as old: it stays as long as its chunk
    kept_state = _a_chunk_state(jobs[0]["commit_id"])
    _old_object(kept_state, get_store().get(kept_state), day)
    young = f"chunks/{uuid.uuid4().hex * 2}"
    _old_object(young, b"written a minute ago", 60)

    dry = service.gc(grace_s=3600, dry_run=True)
    assert all(_exists(k) for k in junk), "a dry run deletes nothing"
    assert dry.deleted_objects >= len(junk)

    report = service.gc(grace_s=3600)
    assert not any(_exists(k) for k in junk)
    assert _exists(young), "younger than the grace period: kept"
    assert _exists(kept_state), "the state of a kept chunk stays"
    assert report.deleted_objects >= len(junk) and report.freed_bytes > 0
    assert report.by_kind["chunks"]["kept"] > 0
    _clean(ds["name"])
    for job, body in zip(jobs, (v1, v2), strict=True):
        got = _rows_at(client, admin, ds["id"], job["commit_id"])
        assert got.equals(pl.read_csv(io.BytesIO(body)))
    again = client.get(
        f"/api/v1/datasets/{ds['id']}/refs/{jobs[0]['commit_id']}/export?format=parquet",
        headers=admin,
    )
    assert again.status_code == 200 and again.content == export.content


def test_reflog_retention_decides_when_a_deleted_branch_goes(
    client: Any, admin: dict[str, str], worker: Any
) -> None:
    ds = make_dataset(client, admin)
    assert import_csv(client, admin, ds["id"], _csv())["state"] == "succeeded"
    r = client.post(
        f"/api/v1/datasets/{ds['id']}/branches",
        json={"name": "side", "from": "main"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    side = import_csv(client, admin, ds["id"], _csv(edit=7, tag="side"), branch="side")
    assert side["state"] == "succeeded"
    assert (
        client.delete(f"/api/v1/datasets/{ds['id']}/branches/side", headers=admin).status_code
        == 204
    )
    commit_url = f"/api/v1/datasets/{ds['id']}/commits/{side['commit_id']}"

    service.gc(grace_s=0, force=True)  # the reflog still names it: kept
    assert client.get(commit_url, headers=admin).status_code == 200
    _clean(ds["name"])

    with db.transaction() as conn:  # 31 days on
        conn.execute(
            "UPDATE ref_log SET created_at = created_at - interval '31 days' "
            "WHERE dataset_id = %s AND ref_name = 'side'",
            (ds["id"],),
        )
    report = service.gc(grace_s=0, force=True)
    assert report.pruned_commits == 1 and report.expired_reflog >= 2
    assert client.get(commit_url, headers=admin).status_code == 404
    assert not _exists(f"commits/{side['commit_id']}")
    _clean(ds["name"])
    main = client.get(f"/api/v1/datasets/{ds['id']}/refs/main/export?format=csv", headers=admin)
    assert pl.read_csv(io.BytesIO(main.content)).equals(pl.read_csv(io.BytesIO(_csv())))


def test_a_deleted_dataset_can_be_restored_until_it_is_purged(
    client: Any, admin: dict[str, str], worker: Any
) -> None:
    ds = make_dataset(client, admin)
    job = import_csv(client, admin, ds["id"], _csv(tag="gone", edit=3))
    assert job["state"] == "succeeded"
    url = f"/api/v1/datasets/{ds['id']}"
    assert client.delete(url, headers=admin).status_code == 204
    service.gc(grace_s=0, force=True)  # inside DSA_DELETED_RETENTION: nothing of it goes
    assert _exists(f"commits/{job['commit_id']}")
    r = client.post(f"{url}/restore", headers=admin)
    assert r.status_code == 200 and r.json()["name"] == ds["name"]
    assert client.get(f"{url}/refs/main/data", headers=admin).status_code == 200
    assert client.post(f"{url}/restore", headers=admin).status_code == 404  # not deleted

    assert client.delete(url, headers=admin).status_code == 204
    with db.transaction() as conn:
        conn.execute(
            "UPDATE dataset SET deleted_at = deleted_at - interval '8 days' WHERE id = %s",
            (ds["id"],),
        )
    report = service.gc(grace_s=0, force=True)
    assert report.purged_datasets == 1
    assert not _exists(f"commits/{job['commit_id']}")
    assert client.post(f"{url}/restore", headers=admin).status_code == 404


def test_restore_is_for_installation_admins_and_refuses_a_taken_name(
    client: Any, admin: dict[str, str]
) -> None:
    from tests.conftest import make_user

    ds = make_dataset(client, admin)
    url = f"/api/v1/datasets/{ds['id']}"
    assert client.delete(url, headers=admin).status_code == 204
    other = make_user(client, admin)
    assert client.post(f"{url}/restore", headers=other).status_code == 403
    make_dataset(client, admin, name=ds["name"])
    taken = client.post(f"{url}/restore", headers=admin)
    assert taken.status_code == 409 and taken.json()["code"] == "dataset_exists"


def test_a_short_grace_needs_force_and_two_sweeps_never_run_at_once(
    client: Any, admin: dict[str, str], stack: dict[str, str]
) -> None:
    with pytest.raises(GraceTooShort):
        service.gc(grace_s=60)
    r = client.post("/api/v1/admin/gc", json={"grace_seconds": 60}, headers=admin)
    assert r.status_code == 422 and r.json()["code"] == "grace_too_short"
    with service.locked(exclusive=True, what="a test"):
        with pytest.raises(GcBusy):
            service.gc(grace_s=3600)
        with pytest.raises(GcBusy):
            service.fsck(emit=lambda p: None)
        cli = _dsa(stack, "gc", "--grace", "2h")
        assert cli.returncode == 2 and "is running" in cli.stderr, cli.stderr
    with (
        service.locked(exclusive=False, what="a test"),  # an fsck running
        pytest.raises(GcBusy, match="fsck or another gc"),
    ):
        service.gc(grace_s=3600)


def test_the_command_and_the_job(
    client: Any, admin: dict[str, str], worker: Any, stack: dict[str, str]
) -> None:
    dry = _dsa(stack, "gc", "--dry-run", "--json", "--grace", "1h")
    assert dry.returncode == 0, dry.stderr
    last = json.loads(dry.stdout.splitlines()[-1])
    assert set(last["summary"]) == {"deleted_objects", "freed_bytes", "kept_objects"}
    bad = _dsa(stack, "gc", "--grace", "soon")
    assert bad.returncode == 2 and "invalid duration" in bad.stderr

    r = client.post(
        "/api/v1/admin/gc",
        json={"grace_seconds": 0, "force": True, "dry_run": True},
        headers=admin,
    )
    assert r.status_code == 202, r.text
    job = wait_job(client, admin, r.json()["job_id"], timeout=120)
    assert job["state"] == "succeeded", job
    assert job["kind"] == "gc" and job["result"]["dry_run"] is True
    assert "kept_objects" in job["result"]["summary"]


def test_gc_while_imports_merges_and_reuploads_run(
    client: Any, admin: dict[str, str], worker: Any
) -> None:
    """gc with no grace at all, again and again, while two datasets take
    re-uploads on two branches and merges: afterwards every commit made
    checks clean, deep, and reads back equal to what was uploaded."""
    datasets = [make_dataset(client, admin, primary_key=["id"]) for _ in range(2)]
    made: list[tuple[str, str, bytes]] = []  # (dataset, commit, source)
    lock = threading.Lock()
    for ds in datasets:
        assert import_csv(client, admin, ds["id"], _csv())["state"] == "succeeded"
        r = client.post(
            f"/api/v1/datasets/{ds['id']}/branches",
            json={"name": "dev", "from": "main"},
            headers=admin,
        )
        assert r.status_code == 201

    def writes(ds: dict[str, Any], n: int) -> None:
        for round_ in range(n):
            for branch, step in (("main", 5 + round_), ("dev", 11 + round_)):
                body = _csv(edit=step, tag=f"{branch}{round_}")
                r = upload(client, admin, ds["id"], body, branch=branch)
                assert r.status_code == 202, r.text
                job = wait_job(client, admin, r.json()["job_id"], timeout=120)
                assert job["state"] == "succeeded", job
                with lock:
                    made.append((ds["id"], job["commit_id"], body))
            m = client.post(
                f"/api/v1/datasets/{ds['id']}/merges",
                json={"source": "dev", "target": "main", "strategy": "theirs"},
                headers=admin,
            )
            assert m.status_code in (200, 201), m.text

    threads = [threading.Thread(target=writes, args=(ds, 3)) for ds in datasets]
    errors: list[BaseException] = []

    def run(t: threading.Thread) -> None:
        try:
            t.run()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    runners = [threading.Thread(target=run, args=(t,)) for t in threads]
    for t in runners:
        t.start()
    sweeps = 0
    while any(t.is_alive() for t in runners):
        service.gc(grace_s=0, force=True)
        sweeps += 1
    for t in runners:
        t.join()
    assert not errors, errors
    service.gc(grace_s=0, force=True)
    assert sweeps >= 1  # each began while writes ran (how many fit depends on the store's size)
    for ds in datasets:
        _clean(ds["name"])
    for ds_id, commit, body in made:
        got = _rows_at(client, admin, ds_id, commit)
        assert got.equals(pl.read_csv(io.BytesIO(body))), commit
    for ds in datasets:  # merges' commits read back whole too
        main = _rows_at(client, admin, ds["id"], "main")
        assert main.height == ROWS


def _referenced_bytes(ds_id: str) -> int:
    """What the dataset's commits reference, summed from the store itself."""
    from core.objects import get_commit
    from features.commits import service as commits_service

    store, keys = get_store(), set()
    with db.read() as conn:
        ids = [r["id"] for r in commits_service.every(conn, uuid.UUID(ds_id))]
    for cid in ids:
        keys.update(commits_service.commit_objects(get_commit(store, cid), cid))
    return sum(st.size for k in keys if (st := store.stat(k)) is not None)


def test_storage_is_counted_per_dataset_as_commits_land_and_exactly_after_gc(
    client: Any, admin: dict[str, str], worker: Any
) -> None:
    a, b = make_dataset(client, admin), make_dataset(client, admin)
    column = f"score_{uuid.uuid4().hex[:8]}".encode()  # no schema another test made

    def own(body: bytes) -> bytes:
        return body.replace(b"score", column, 1)

    body = own(_csv(tag="shared", edit=13))
    assert import_csv(client, admin, a["id"], body)["state"] == "succeeded"
    assert import_csv(client, admin, a["id"], own(_csv(tag="a2", edit=9)))["state"] == "succeeded"

    def storage(ds: dict[str, Any]) -> dict[str, int]:
        r = client.get(f"/api/v1/datasets/{ds['id']}", headers=admin)
        assert r.status_code == 200
        return dict(r.json()["storage"])

    alone = storage(a)
    assert alone["bytes"] == _referenced_bytes(a["id"]) and alone["unique_bytes"] == alone["bytes"]
    # the same rows imported into another dataset are stored once: shared
    assert import_csv(client, admin, b["id"], body)["state"] == "succeeded"
    shared = storage(a)
    assert shared["bytes"] == alone["bytes"] and shared["unique_bytes"] < alone["bytes"]
    assert storage(b)["unique_bytes"] < storage(b)["bytes"] == _referenced_bytes(b["id"])

    with db.transaction() as conn:  # as after an upgrade: nothing counted yet
        conn.execute("DELETE FROM dataset_object WHERE dataset_id = %s", (a["id"],))
    assert storage(a)["bytes"] == 0
    service.gc(grace_s=3600)
    assert storage(a) == shared
    assert client.get("/api/v1/datasets", headers=admin).json()["items"][0]["storage"] is None


def test_backup_names_every_table_the_migrations_make() -> None:
    """A new table must be copied by dsa backup or named as skipped."""
    from features.integrity import backup

    schema = (ROOT / "migrations" / "schema.sql").read_text()
    tables = {line.split()[1] for line in schema.splitlines() if line.startswith("TABLE ")}
    assert tables == set(backup.TABLES) | set(backup.SKIPPED)


def test_a_kept_manifest_that_cannot_be_read_stops_every_chunk_deletion(
    client: Any, admin: dict[str, str], worker: Any
) -> None:
    """Which chunks an unreadable manifest needs is unknown: gc then deletes
    no chunk at all (it says which manifests), rather than its chunks."""
    from core.objects import get_commit

    ds = make_dataset(client, admin)
    job = import_csv(client, admin, ds["id"], _csv(tag="unreadable", edit=11))
    manifest = get_commit(get_store(), job["commit_id"]).tables["data"].manifest
    store = get_store()
    assert isinstance(store, LocalStore)
    path = store._path(f"manifests/{manifest}")  # noqa: SLF001
    saved = path.read_bytes()
    orphan = f"chunks/{uuid.uuid4().hex * 2}"
    _old_object(orphan, b"an orphan chunk", 86_400)
    from core import objects

    objects._cache.clear()  # noqa: SLF001  (this process read it whole before)
    path.unlink()
    try:
        report = service.gc(grace_s=3600)
    finally:
        path.write_bytes(saved)
    assert report.unreadable_manifests == [f"manifests/{manifest}"]
    assert _exists(orphan) and report.by_kind["chunks"]["deleted"] == 0
    service.gc(grace_s=3600)  # whole again: the orphan goes
    assert not _exists(orphan)
    _clean(ds["name"])


def test_commits_a_ref_moved_onto_while_gc_pruned_keep_their_objects(
    client: Any, admin: dict[str, str], worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When pruning fails (a ref was moved onto one of the commits meanwhile:
    the foreign key refuses), nothing of those commits is swept either."""
    import psycopg

    from features.commits import service as commits_service

    ds = make_dataset(client, admin)
    assert import_csv(client, admin, ds["id"], _csv(tag="fk"))["state"] == "succeeded"
    r = client.post(
        f"/api/v1/datasets/{ds['id']}/branches",
        json={"name": "side", "from": "main"},
        headers=admin,
    )
    assert r.status_code == 201
    side = import_csv(client, admin, ds["id"], _csv(edit=3, tag="fk-side"), branch="side")
    assert (
        client.delete(f"/api/v1/datasets/{ds['id']}/branches/side", headers=admin).status_code
        == 204
    )
    with db.transaction() as conn:
        conn.execute(
            "UPDATE ref_log SET created_at = created_at - interval '31 days' "
            "WHERE dataset_id = %s AND ref_name = 'side'",
            (ds["id"],),
        )

    def refused(*args: Any, **kwargs: Any) -> int:
        raise psycopg.errors.ForeignKeyViolation("a ref points at one of them")

    monkeypatch.setattr(commits_service, "prune", refused)
    report = service.gc(grace_s=0, force=True)
    assert report.pruned_commits == 0
    assert _exists(f"commits/{side['commit_id']}")
    _clean(ds["name"])  # its rows and objects both still there

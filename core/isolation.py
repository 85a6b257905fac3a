"""Run untrusted work in a forked child with memory and CPU-time limits.

A parser library may abort, segfault or balloon on a hostile file: in a
child only the child dies, and the worker process goes on. The worker's
import task is the one caller (``features.imports.pipeline``); the limits
are the worker's settings (``DSA_IMPORT_MEMORY_LIMIT_BYTES``,
``DSA_IMPORT_CPU_LIMIT_S``). ``os.fork`` rather than multiprocessing:
Celery's pool processes are daemonic and may not start multiprocessing
children.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import signal
import sys
from collections.abc import Callable

import structlog

from core import db

log = structlog.get_logger(__name__)


def run_isolated(
    fn: Callable[[], None],
    *,
    memory_bytes: int,
    cpu_s: int,
    file_bytes: int = 0,
    watch: Callable[[int], int] | None = None,
) -> int:
    """Run ``fn`` in a child limited to ``memory_bytes`` of address space,
    ``cpu_s`` seconds of CPU and files of at most ``file_bytes`` (0: no
    limit); returns its wait status (0: it returned). A write past
    ``file_bytes`` fails with ``OSError`` EFBIG in the child (SIGXFSZ is
    ignored there), which its caller reports. The child dies with its parent
    and never returns here. ``watch(pid)``, when given, waits for the child
    in the parent's place and returns its wait status (if it raises, the
    child is killed)."""
    gc.freeze()  # the child's collector leaves the parent's objects (and pages) alone
    pid = os.fork()
    if pid:
        gc.unfreeze()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            _die_with_parent()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            db.forget_pool_after_fork()
            if memory_bytes:
                resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
            if cpu_s:
                resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
            if file_bytes:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
            fn()
            code = 0
        except BaseException:  # noqa: BLE001 - the child reports through its own channel
            log.exception("isolated child failed")
        finally:
            os._exit(code)
    if watch is None:
        return os.waitpid(pid, 0)[1]
    try:
        return watch(pid)
    except BaseException:
        with contextlib.suppress(ProcessLookupError, ChildProcessError):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise


def killed_from_outside(status: int) -> bool:
    """SIGKILL comes from outside (an operator, the OOM killer), not from a limit."""
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def out_of_cpu(status: int) -> bool:
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU


def signal_name(status: int) -> str | None:
    """The signal that ended the child, if one did."""
    return signal.Signals(os.WTERMSIG(status)).name if os.WIFSIGNALED(status) else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)

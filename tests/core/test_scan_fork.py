"""A forked child can still scan: the worker scans in its own process (a
quality report, a read copy) and then forks children that scan (statistics,
imports). Before the fix, the child's take queued work on the parent's
thread pool, whose threads a fork does not copy, and hung."""

from __future__ import annotations

import os
import signal
import time

import pyarrow as pa

from core import scan


def test_a_forked_child_takes_rows_after_its_parent_did() -> None:
    table = pa.table({"a": list(range(100)), "b": [str(i) for i in range(100)]})
    at = pa.array([5, 3, 1])
    assert scan._take(table, at).column("a").to_pylist() == [5, 3, 1]  # the pool has threads
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            got = scan._take(table, at).column("b").to_pylist()
            code = 0 if got == ["5", "3", "1"] else 2
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the forked child hung on the scan's thread pool")

"""Imports run in a forked child with memory and CPU limits (core/isolation.py):
a parser that balloons or crashes takes down only that child."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

from core.isolation import out_of_cpu, run_isolated, signal_name


def _in_child(fn: Callable[[], None], cpu_s: int = 2) -> int:
    return run_isolated(fn, memory_bytes=2 * 1024**3, cpu_s=cpu_s)


def test_a_normal_child_returns_zero() -> None:
    assert _in_child(lambda: None) == 0


def test_memory_past_the_limit_fails_in_the_child_only() -> None:
    def balloon() -> None:
        blocks = []
        for _ in range(64):
            blocks.append(bytearray(256 * 1024**2))  # 16 GB in all, far past 2 GB

    status = _in_child(balloon, cpu_s=30)  # filling 2 GB takes CPU time too
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1  # MemoryError, reported


def test_a_crash_and_a_cpu_hog_are_reported_by_signal() -> None:
    status = _in_child(lambda: os.kill(os.getpid(), signal.SIGSEGV))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV
    assert signal_name(status) == "SIGSEGV"

    def spin() -> None:
        while True:
            pass

    status = _in_child(spin)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL)
    assert out_of_cpu(status) == (os.WTERMSIG(status) == signal.SIGXCPU)


def test_a_file_past_the_limit_fails_the_write_in_the_child(tmp_path: object) -> None:
    """RLIMIT_FSIZE (issue 15, "Sandbox"): a child that writes a runaway file
    gets EFBIG at the limit instead of filling the disk (before: no limit)."""
    import errno
    from pathlib import Path

    out = Path(str(tmp_path))
    big, result = out / "big", out / "result"

    def write() -> None:
        try:
            with open(big, "wb") as f:
                for _ in range(8):
                    f.write(b"x" * 1024**2)
            result.write_text("wrote it all")
        except OSError as exc:
            result.write_text(str(exc.errno))

    status = run_isolated(write, memory_bytes=0, cpu_s=10, file_bytes=3 * 1024**2)
    assert status == 0
    assert result.read_text() == str(errno.EFBIG)
    assert big.stat().st_size <= 3 * 1024**2

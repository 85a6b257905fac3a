"""Imports run in a forked child with memory and CPU limits: a parser that
balloons or crashes takes down only that child."""

from __future__ import annotations

import os
import signal

import pytest

from core.config import get_settings
from features.imports import service


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings().model_copy(
        update={"import_memory_limit_bytes": 2 * 1024**3, "import_cpu_limit_s": 2}
    )
    monkeypatch.setattr(service, "get_settings", lambda: settings)


def test_a_normal_child_returns_zero(small_limits: None) -> None:
    assert service._in_child(lambda: None) == 0


def test_memory_past_the_limit_fails_in_the_child_only(small_limits: None) -> None:
    def balloon() -> None:
        blocks = []
        for _ in range(64):
            blocks.append(bytearray(256 * 1024**2))  # 16 GB in all, far past 2 GB

    status = service._in_child(balloon)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 1  # MemoryError, reported


def test_a_crash_and_a_cpu_hog_are_reported_by_signal(small_limits: None) -> None:
    status = service._in_child(lambda: os.kill(os.getpid(), signal.SIGSEGV))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSEGV

    def spin() -> None:
        while True:
            pass

    status = service._in_child(spin)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL)

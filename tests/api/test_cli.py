"""The ``dsa`` command's process set-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's prctl")
def test_the_api_process_runs_without_transparent_huge_pages() -> None:
    """``dsa api`` turns huge pages off for itself and the workers it forks
    (decision 0016): the kernel says so in /proc/<pid>/status."""
    code = (
        "import os, api.cli as c; c._no_huge_pages(); pid = os.fork()\n"
        "if pid == 0:\n"
        "    print(open('/proc/self/status').read(), flush=True); os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    status = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    if "THP_enabled" not in status:
        pytest.skip("this kernel does not report THP_enabled")
    assert status["THP_enabled"].strip() == "0"

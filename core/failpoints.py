"""Fail points: named places in the write path where a test makes the
process fail, as a crash would (issue 14, "crash safety, proved").

Always compiled in, a no-op unless ``DSA_FAILPOINTS`` names the point:
``DSA_FAILPOINTS="ref_moved=stop"`` or several, comma-separated. Actions:

- ``stop``: SIGSTOP the process, so a test can find it frozen exactly there
  and SIGKILL it (and its worker) at that instant;
- ``kill``: SIGKILL the process itself;
- ``raise``: raise ``FailPointHit`` (an error the code must survive).

The points (``POINTS``) lie between the steps of landing an import — chunk
written, manifest written, commit row inserted, ref moved, job marked,
transaction committed — and of a gc, between mark and sweep and mid-sweep.
"""

from __future__ import annotations

import os
import signal
from functools import lru_cache

POINTS = (
    "chunk_written",
    "manifest_written",
    "commit_recorded",
    "ref_moved",
    "job_marked",
    "landed",
    "gc_marked",
    "gc_sweeping",
)


class FailPointHit(RuntimeError):
    """What a ``raise`` fail point raises."""


@lru_cache(maxsize=1)
def _armed() -> dict[str, str]:
    from core.config import get_settings

    spec = get_settings().failpoints
    armed = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, action = part.partition("=")
        if name not in POINTS or action not in ("stop", "kill", "raise"):
            raise ValueError(f"DSA_FAILPOINTS: {part!r} is not <point>=stop|kill|raise")
        armed[name] = action
    return armed


def hit(name: str) -> None:
    """Fail here if ``DSA_FAILPOINTS`` says so (a dict lookup otherwise)."""
    action = _armed().get(name)
    if action is None:
        return
    if action == "raise":
        raise FailPointHit(f"fail point {name}")
    os.kill(os.getpid(), signal.SIGSTOP if action == "stop" else signal.SIGKILL)

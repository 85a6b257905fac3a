"""Fixtures of the API tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from core import ratelimit
from core.config import get_settings


@pytest.fixture
def rules(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Set settings (rate rules, slots, deadlines) for one test; the rate
    counters are forgotten before and after."""
    ratelimit.reset()

    def _set(**values: Any) -> None:
        for name, value in values.items():
            monkeypatch.setattr(get_settings(), name, value)

    yield _set
    monkeypatch.undo()
    ratelimit.reset()

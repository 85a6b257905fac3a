"""The quality feature's problem codes."""

from __future__ import annotations

from core.errors import Conflict, Invalid


class QualityGateFailed(Conflict):
    """A commit below the threshold would land on a gated branch: ``score``,
    ``threshold``, ``branch`` and ``failing`` (each failing rule with its
    counts and sample rows)."""

    default_code = "quality_gate_failed"


class InvalidRule(Invalid):
    """A rule the checks cannot run: unknown check, missing or wrong args,
    a pattern that does not compile; ``rule`` names it."""

    default_code = "invalid_rule"

"""Fixtures of the export tests."""

from tests.features.exports.stored import big

__all__ = ["big"]

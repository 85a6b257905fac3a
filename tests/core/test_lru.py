"""The LRU behind the process's caches: items and bytes both bound it."""

from __future__ import annotations

from core.lru import LRU


def test_least_recently_used_goes_first_within_the_byte_budget() -> None:
    lru: LRU[str, bytes] = LRU(max_items=10, max_bytes=10, size_of=len)
    lru.put("a", b"1234")
    lru.put("b", b"1234")
    assert lru.get("a") == b"1234"  # now the most recent
    lru.put("c", b"1234")
    assert lru.get("b") is None and lru.get("a") and lru.get("c") and lru.bytes == 8


def test_an_item_over_the_whole_budget_is_not_kept_and_evicts_nothing() -> None:
    lru: LRU[str, bytes] = LRU(max_items=10, max_bytes=10, size_of=len)
    lru.put("a", b"1234")
    lru.put("big", b"x" * 11)
    assert lru.get("big") is None and lru.get("a") == b"1234" and lru.bytes == 4
    lru.put("a", b"y" * 11)  # replacing a kept item with one too big drops it
    assert lru.get("a") is None and lru.bytes == 0

"""A small thread-safe LRU with an item and a byte budget.

``functools.lru_cache`` has no byte budget and no way to size entries, which
the decoded-chunk cache needs; this is the smallest thing that does.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    def __init__(
        self,
        *,
        max_items: int = 1024,
        max_bytes: int | None = None,
        size_of: Callable[[V], int] | None = None,
    ) -> None:
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._size_of = size_of or (lambda v: 0)
        self.bytes = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            hit = self._data.get(key)
            if hit is None:
                return None
            self._data.move_to_end(key)
            return hit[0]

    def put(self, key: K, value: V) -> None:
        size = self._size_of(value)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if self.max_bytes is not None and size > self.max_bytes:
                return  # would push out everything else, then itself
            self._data[key] = (value, size)
            self.bytes += size
            while self._data and (
                len(self._data) > self.max_items
                or (self.max_bytes is not None and self.bytes > self.max_bytes)
            ):
                _, (_, s) = self._data.popitem(last=False)
                self.bytes -= s

    def pop(self, key: K) -> V | None:
        with self._lock:
            hit = self._data.pop(key, None)
            if hit is None:
                return None
            self.bytes -= hit[1]
            return hit[0]

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.bytes = 0

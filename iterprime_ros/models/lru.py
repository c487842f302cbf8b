"""A small least-recently-used memo.

The backends tokenise the same command once per IGRS pass and once per frame while a command is
repeated; the evaluation memoises per-image work while it walks a dataset. Both want the same
bounded cache with the same eviction rule, so it lives here once.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most ``size`` values; a hit makes its key the newest, the oldest goes first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"LruCache size must be at least 1, got {size}")
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The value for ``key``, made and stored on a miss (a failing ``make`` stores nothing)."""
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        self.misses += 1
        value = make()
        self._items[key] = value
        while len(self._items) > self.size:
            self._items.popitem(last=False)
        return value

    def clear(self) -> None:
        self._items.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

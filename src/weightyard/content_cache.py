"""A bounded in-process cache for what is derived from content and never changes for a given key.

Several workers may serve one hub, so nothing here may hold state that another process can change: a key names
content (a tree object's oid, a file's sha256 with the version of what was derived from it), and its value is
what every process would compute or read for that key. Misses are never cached: a row that appears later is
found then.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ContentCache(Generic[K, V]):
    """Least-recently-used values by key, at most `max_items` of them and `max_weight` in all (each value
    weighs what `weigh` says, e.g. its size in bytes); thread-safe."""

    def __init__(self, max_items: int, max_weight: int = 0, weigh: Callable[[V], int] | None = None) -> None:
        self._max_items = max_items
        self._max_weight = max_weight
        self._weigh = weigh
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: K, value: V) -> None:
        weight = self._weigh(value) if self._weigh is not None else 0
        if self._max_weight and weight > self._max_weight:
            return  # larger than the whole cache: read it again next time
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._weight -= old[1]
            self._items[key] = (value, weight)
            self._weight += weight
            while len(self._items) > self._max_items or (
                self._max_weight and self._weight > self._max_weight
            ):
                _, (_, dropped) = self._items.popitem(last=False)
                self._weight -= dropped

    def __len__(self) -> int:
        return len(self._items)

    @property
    def weight(self) -> int:
        return self._weight

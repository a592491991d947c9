"""``LRUStore``: the memory tier's store under the plain LRU policy (``policy="lru"``).

cachetools' size-bounded ``Cache`` with an LRU order the hit path can touch
directly, bounded by entries as well as by size; evictions are reported to the
tier (``evicted``), as ``TinyLFUStore`` reports them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import cachetools

from ..core.entry import Entry


class LRUStore(cachetools.Cache):  # type: ignore[type-arg]
    """cachetools' size-bounded ``Cache`` with LRU order we can touch from the hot path."""

    def __init__(
        self,
        maxsize: float,
        getsizeof: Any,
        max_entries: int,
        evicted: Callable[[str, Entry], None],
    ) -> None:
        super().__init__(maxsize, getsizeof)
        self.order: OrderedDict[str, None] = OrderedDict()
        self._max_entries = max_entries
        self._evicted = evicted
        self.touch = self.order.move_to_end

    def peek(self, key: str) -> Entry | None:
        """The entry of ``key`` without touching its recency (None: absent)."""
        try:
            entry: Entry = cachetools.Cache.__getitem__(self, key)
            return entry
        except KeyError:
            return None

    def __getitem__(self, key: str) -> Entry:
        value: Entry = super().__getitem__(key)
        self.order.move_to_end(key)
        return value

    def __setitem__(self, key: str, value: Entry) -> None:
        super().__setitem__(key, value)
        self.order[key] = None
        self.order.move_to_end(key)
        while len(self.order) > self._max_entries:
            self.popitem()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        del self.order[key]

    def popitem(self) -> tuple[str, Entry]:
        """Evict the least recently used entry (called by cachetools when over a bound)."""
        key = next(iter(self.order))
        entry: Entry = self.pop(key)
        self._evicted(key, entry)
        return key, entry

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.order))


__all__ = ["LRUStore"]

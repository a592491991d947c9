"""The LRU policy's store: least recently used out first, every eviction reported."""

from __future__ import annotations

from stratacache.core.entry import Entry
from stratacache.tiers.lru import LRUStore


def test_the_least_recently_used_entry_goes_first_and_is_reported() -> None:
    """Past ``max_entries`` the entry touched longest ago is evicted and handed to the tier."""
    evicted: list[tuple[str, object]] = []
    store = LRUStore(10**9, lambda entry: 1, 2, lambda key, entry: evicted.append((key, entry)))
    a, b, c = (Entry(name, 0.0) for name in "abc")
    store["a"], store["b"] = a, b
    assert store["a"] is a  # touched: "b" is now the least recently used
    assert store.peek("b") is b  # a peek does not touch
    store["c"] = c
    assert evicted == [("b", b)]
    assert list(store) == ["a", "c"]
    assert store.peek("b") is None


def test_a_size_bound_evicts_until_the_new_entry_fits() -> None:
    """cachetools' byte bound evicts through the same reporting path."""
    evicted: list[str] = []
    store = LRUStore(3, lambda entry: 2, 100, lambda key, entry: evicted.append(key))
    store["a"] = Entry("a", 0.0)
    store["b"] = Entry("b", 0.0)
    assert evicted == ["a"] and list(store) == ["b"]

"""The decorator memo keeps nothing alive: slots die with entries, instances are held weakly."""

from __future__ import annotations

import gc
import sys
import weakref
from typing import Any

import pytest

import stratacache as sc
from stratacache.core.memo import KW, CallMemo, call_key, split_call_key


class Upload:
    """An object with a cache identity, holding a large buffer."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.buffer = bytearray(1 << 16)

    def __cache_key__(self) -> int:
        return self.n


def _cache(**tier: Any) -> sc.Cache:
    return sc.Cache(tiers=[sc.MemoryTier(**tier)], namespace="m", default_ttl=60)


@pytest.mark.parametrize(
    "options",
    [{}, {"key": "up:{self.n}:{algo}"}, {"ignore": ("self",)}],
    ids=["auto", "tpl", "ign"],
)
def test_instances_are_collectable_while_entries_live(options: dict[str, Any]) -> None:
    """Dropped instances whose method was cached are collected; their slots go with them."""
    cache = _cache(maxsize=1000)

    class Holder(Upload):
        @cache.cached(ttl=60, **options)
        def checksum(self, algo: str) -> str:
            return algo.upper()

    refs = []
    for i in range(20):
        up = Holder(i)
        assert up.checksum("sha1") == up.checksum("sha1") == "SHA1"
        refs.append(weakref.ref(up))
        del up
    gc.collect()
    assert sum(r() is not None for r in refs) == 0
    assert len(Holder.checksum._memo) == 0  # type: ignore[attr-defined]
    assert len(cache.tiers.top) >= 1  # the results themselves stay cached


@pytest.mark.parametrize("how", ["clear", "invalidate", "delete", "evict"])
def test_memo_releases_arguments_when_their_entry_dies(how: str) -> None:
    """clear(), invalidation, delete and eviction drop the memo slot and the arguments it held."""
    cache = _cache(maxsize=2, policy="lru")  # LRU: the two later calls surely evict ``big``

    @cache.cached(ttl=60)
    def size(text: str) -> int:
        return len(text)

    big = "x" * 100_000 + how  # a fresh object whose references we can count
    before = sys.getrefcount(big)
    assert size(big) == size(big) == len(big)
    assert sys.getrefcount(big) > before and len(size._memo) == 1  # type: ignore[attr-defined]
    if how == "clear":
        cache.sync.clear()
    elif how == "invalidate":
        size.invalidate(big)  # type: ignore[attr-defined]
    elif how == "delete":
        cache.sync.delete(cache.relative_key(size.key(big)))  # type: ignore[attr-defined]
    else:
        size("a"), size("b")
    assert sys.getrefcount(big) == before
    assert all(e[0].alive for e in size._memo.data.values())  # type: ignore[attr-defined]


@pytest.mark.parametrize("maxsize", [1, 5, 50])
def test_memo_is_bounded_by_the_memory_tier_entries(maxsize: int) -> None:
    """However many distinct calls (and call spellings) are made, slots never exceed maxsize."""
    cache = _cache(maxsize=maxsize)

    @cache.cached(ttl=60)
    def double(x: int) -> int:
        return 2 * x

    for i in range(200):
        assert double(i) == double(x=i) == double(float(i)) == 2 * i
        assert len(double._memo) <= maxsize  # type: ignore[attr-defined]


def test_memo_is_bounded_by_the_memory_tier_bytes() -> None:
    """With max_bytes, the arguments the memo holds stay within that many bytes."""
    cache = _cache(maxsize=10_000, max_bytes=200_000)

    @cache.cached(ttl=60)
    def first(text: str) -> str:
        return text[:1]

    for i in range(100):
        first(f"{i:04d}" + "y" * 10_000)
        memo = first._memo  # type: ignore[attr-defined]
        assert memo.bytes <= 200_000 and len(memo) <= 20


def test_weakly_held_arguments_still_refresh_while_alive() -> None:
    """refresh_hot() recomputes memoized method calls whose instance is still alive."""
    cache = _cache(maxsize=100)
    loads: list[int] = []

    class Holder(Upload):
        @cache.cached(ttl=60)
        def value(self, scale: int) -> int:
            loads.append(self.n)
            return self.n * scale

    kept = Holder(3)
    assert kept.value(2) == 6 and Holder(4).value(2) == 8
    gc.collect()
    assert Holder.value.refresh_hot() == 1 and loads == [3, 4, 3]  # type: ignore[attr-defined]


def test_call_keys_split_back_into_arguments() -> None:
    """A memo key keeps positional arguments and keyword names/values apart."""
    key = call_key((1, "a"), {"x": 2, "y": None})
    assert KW in key and split_call_key(key) == ((1, "a"), {"x": 2, "y": None})
    assert call_key((1,), {}) == (1,) and split_call_key((1,)) == ((1,), {})


def test_memo_without_a_memory_tier_keeps_nothing() -> None:
    """A cache whose top tier cannot be peeked memoizes nothing."""
    memo = CallMemo(object(), typed=False)
    memo.remember((1,), "k", trusted=True)
    assert len(memo) == 0

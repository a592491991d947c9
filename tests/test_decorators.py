"""``@cache.cached`` on sync, async functions and methods; the memo fast path stays coherent."""

from __future__ import annotations

from typing import Any

import pytest

import stratacache as sc
from stratacache.core.clock import ManualClock


def _cache(clock: ManualClock | None = None, maxsize: int = 100) -> sc.Cache:
    return sc.Cache(tiers=[sc.MemoryTier(maxsize=maxsize)], namespace="d", clock=clock)


def test_sync_function_is_called_once_per_arguments() -> None:
    """Repeated calls with the same arguments hit; different arguments load."""
    cache = _cache()
    calls: list[int] = []

    @cache.cached(ttl=60)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert [square(2), square(2), square(3), square(x=2)] == [4, 4, 9, 4]
    assert calls == [2, 3]
    assert square.stats.as_dict()["hits"] == 2  # type: ignore[attr-defined]


async def test_async_function_is_called_once() -> None:
    """An async function's result is cached; its coroutine is not."""
    cache = _cache()
    calls = []

    @cache.cached(ttl=60, key="user:{user_id}")
    async def get_user(user_id: int) -> dict[str, int]:
        calls.append(user_id)
        return {"id": user_id}

    async with cache:
        assert await get_user(1) == {"id": 1}
        assert await get_user(1) == {"id": 1}
        assert await cache.get("user:1") == {"id": 1}
    assert calls == [1]


def test_methods_are_cached_per_arguments() -> None:
    """A decorated method caches by its arguments (self excluded from automatic keys)."""
    cache = _cache()
    calls = []

    class Repo:
        @cache.cached(ttl=60)
        def find(self, item_id: int) -> str:
            calls.append(item_id)
            return f"item{item_id}"

    repo = Repo()
    assert repo.find(1) == repo.find(1) == "item1"
    assert Repo().find(1) == "item1"  # same automatic key from another instance
    assert calls == [1]


def test_ttl_expiry_reaches_fast_path() -> None:
    """After the TTL the memoized entry is not served; the function runs again."""
    clock = ManualClock()
    cache = _cache(clock)
    calls = []

    @cache.cached(ttl=10)
    def f(x: int) -> int:
        calls.append(x)
        return len(calls)

    assert f(1) == 1 and f(1) == 1
    clock.advance(11)
    assert f(1) == 2


def test_invalidation_by_key_tag_and_prefix_reaches_fast_path() -> None:
    """fn.invalidate, tag and prefix invalidation all stop the memo from serving."""
    cache = _cache()
    calls = []

    @cache.cached(ttl=60, key="acct:{a}", tags=["org:{a}"])
    def account(a: int) -> int:
        calls.append(a)
        return len(calls)

    first = account(1)
    assert account(1) == first
    account.invalidate(1)  # type: ignore[attr-defined]
    second = account(1)
    assert second != first
    cache.sync.invalidate(tags=["org:1"])
    third = account(1)
    assert third != second
    cache.sync.invalidate(prefix="acct:")
    assert account(1) != third
    assert account(1) == account(1)


def test_eviction_reaches_fast_path() -> None:
    """An entry evicted from memory by LRU is not served from the memo."""
    cache = sc.Cache(tiers=[sc.MemoryTier(maxsize=2, policy="lru")], namespace="d")
    calls = []

    @cache.cached(ttl=60)
    def f(x: int) -> int:
        calls.append(x)
        return x

    f(1), f(2), f(3)  # 1 is evicted
    f(1)
    assert calls == [1, 2, 3, 1]


def test_unhashable_arguments_use_the_slow_path() -> None:
    """Lists and dicts as arguments still cache, keyed by their stable digest."""
    cache = _cache()
    calls = []

    @cache.cached(ttl=60)
    def total(items: list[int], opts: dict[str, Any]) -> int:
        calls.append(1)
        return sum(items)

    assert total([1, 2], {"a": 1}) == total([1, 2], {"a": 1}) == 3
    assert len(calls) == 1


def test_unserializable_argument_is_a_clear_error() -> None:
    """An argument that cannot make a stable key raises CacheKeyError naming the function."""
    cache = _cache()

    @cache.cached(ttl=60)
    def f(thing: object) -> int:
        return 1

    with pytest.raises(sc.CacheKeyError, match="f"):
        f(object())


def test_unserializable_result_raises_and_is_not_cached() -> None:
    """A result that cannot be encoded raises SerializationError at the call."""
    cache = _cache()

    @cache.cached(ttl=60)
    def f() -> object:
        return object()

    with pytest.raises(sc.SerializationError):
        f()


def test_template_with_unknown_argument_fails_at_decoration() -> None:
    """key='user:{uid}' on a function without uid fails when decorating."""
    cache = _cache()
    with pytest.raises(sc.CacheKeyError):

        @cache.cached(key="user:{uid}")
        def f(user_id: int) -> None: ...


def test_refresh_recomputes_and_stores() -> None:
    """fn.refresh runs the function now and the next call serves the new value."""
    cache = _cache()
    counter = iter(range(100))

    @cache.cached(ttl=60)
    def f() -> int:
        return next(counter)

    assert f() == 0
    assert f.refresh() == 1  # type: ignore[attr-defined]
    assert f() == 1


def test_cache_none_choice() -> None:
    """cache_none=False makes a None result run again on the next call."""
    cache = _cache()
    calls = []

    @cache.cached(ttl=60, cache_none=False)
    def f() -> None:
        calls.append(1)

    f(), f()
    assert len(calls) == 2


def test_kwargs_and_positional_share_the_entry() -> None:
    """f(1) and f(x=1) resolve to the same stored entry."""
    cache = _cache()
    calls = []

    @cache.cached(ttl=60)
    def f(x: int) -> int:
        calls.append(x)
        return x

    f(1), f(x=1), f(x=1)
    assert calls == [1]


def test_key_helper_returns_full_key() -> None:
    """fn.key(...) gives the namespaced key a call is stored under."""
    cache = _cache()

    @cache.cached(key="k:{x}")
    def f(x: int) -> int:
        return x

    assert f.key(5) == "d:k:5"  # type: ignore[attr-defined]

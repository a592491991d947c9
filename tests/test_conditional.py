"""Conditional caching: condition= / unless= on @cache.cached and get_or_set, beside cache_none."""

from __future__ import annotations

from typing import Any

import pytest

import stratacache as sc


@pytest.fixture(params=["memory", "memory+redis"])
def cache(request: pytest.FixtureRequest) -> Any:
    """A memory cache, and a memory+Redis one (real Redis)."""
    url = "memory://"
    if request.param == "memory+redis":
        url += "," + request.getfixturevalue("redis_url")
    built = sc.Cache.from_url(url, namespace="cond", bus=False)
    yield built
    built.sync.close()


async def test_get_or_set_unless_skips_storing(cache: sc.Cache) -> None:
    """A result matching unless= is returned but not stored; others are stored."""
    assert await cache.get_or_set("a", lambda: None, unless=lambda r: r is None) is None
    assert not await cache.exists("a")
    assert await cache.get_or_set("b", lambda: 3, unless=lambda r: r is None) == 3
    assert await cache.get("b") == 3


async def test_get_or_set_condition(cache: sc.Cache) -> None:
    """Only results for which condition= is true are stored."""
    assert await cache.get_or_set(
        "404", lambda: {"status": 404}, condition=lambda r: r["status"] == 200
    ) == {"status": 404}
    assert not await cache.exists("404")
    await cache.get_or_set("200", lambda: {"status": 200}, condition=lambda r: r["status"] == 200)
    assert await cache.exists("200")


def test_sync_get_or_set_unless(cache: sc.Cache) -> None:
    """cache.sync.get_or_set honours unless= the same way."""
    s = cache.sync
    assert s.get_or_set("a", lambda: 0, unless=lambda r: r == 0) == 0
    assert not s.exists("a")
    assert s.get_or_set("b", lambda: 1, unless=lambda r: r == 0) == 1
    assert s.exists("b")


async def test_decorator_unless_async(cache: sc.Cache) -> None:
    """@cached(unless=...) on an async function: a None result is recomputed, others served."""
    calls: list[int] = []

    @cache.cached(key="user:{uid}", unless=lambda r: r is None)
    async def user(uid: int) -> dict[str, int] | None:
        calls.append(uid)
        return None if uid == 0 else {"id": uid}

    assert await user(0) is None and await user(0) is None
    assert await user(1) == {"id": 1} and await user(1) == {"id": 1}
    assert calls == [0, 0, 1]


def test_decorator_condition_sync(cache: sc.Cache) -> None:
    """@cached(condition=...) on a sync function caches only accepted results."""
    calls: list[int] = []

    @cache.cached(condition=lambda r: r >= 0)
    def f(x: int) -> int:
        calls.append(x)
        return x

    assert [f(-1), f(-1), f(2), f(2)] == [-1, -1, 2, 2]
    assert calls == [-1, -1, 2]


def test_condition_and_unless_combine() -> None:
    """Both given: stored only when condition is true and unless is false."""
    cache = sc.Cache([sc.MemoryTier()])
    s = cache.sync
    for key, value in [("a", 1), ("b", 50), ("c", -1)]:
        s.get_or_set(key, lambda v=value: v, condition=lambda r: r > 0, unless=lambda r: r > 10)
    assert [s.exists(k) for k in "abc"] == [True, False, False]
    s.close()


def test_cache_none_false_still_applies() -> None:
    """cache_none=False keeps None out even without a predicate."""
    cache = sc.Cache([sc.MemoryTier()], cache_none=False)
    assert cache.sync.get_or_set("n", lambda: None) is None
    assert not cache.sync.exists("n")
    cache.sync.close()


@pytest.mark.parametrize("bad", [1, "x", True])
def test_non_callable_predicate_is_a_config_error(bad: Any) -> None:
    """A predicate that is not callable is refused at decoration / call time."""
    cache = sc.Cache([sc.MemoryTier()])
    with pytest.raises(sc.ConfigError, match="unless"):
        cache.cached(unless=bad)
    with pytest.raises(sc.ConfigError, match="condition"):
        cache.sync.get_or_set("k", lambda: 1, condition=bad)
    cache.sync.close()

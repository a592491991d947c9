"""The running side of a Cache: lifecycle and the extension surface front doors use."""

from __future__ import annotations

import pytest

import stratacache as sc
from stratacache.core.errors import ConfigError


async def test_started_and_home_loop_follow_the_lifecycle() -> None:
    """``started``/``home_loop`` are set by start and cleared by close."""
    import asyncio

    cache = sc.Cache([sc.MemoryTier()], namespace="rt")
    assert not cache.started and cache.home_loop is None
    async with cache:
        assert cache.started and cache.home_loop is asyncio.get_running_loop()
    assert not cache.started


def test_extension_surface_without_a_fleet_lock() -> None:
    """A memory-only cache has no fleet lock: ``lock=True`` is refused where it is asked for."""
    cache = sc.Cache([sc.MemoryTier()], namespace="rt")
    assert cache.lock is None and cache.resolve_lock(None) is None
    with pytest.raises(ConfigError):
        cache.resolve_lock(True)
    assert cache.top_tier is cache.tiers.top and cache.local_trusted


def test_a_lock_given_to_the_constructor_is_the_lock_of_lock_true(redis_url: str) -> None:
    """``Cache(lock=...)`` is what ``lock=True`` resolves to (no attribute poking)."""
    lock = sc.RedisLock(redis_url)
    cache = sc.Cache([sc.MemoryTier(), sc.RedisTier(redis_url)], namespace="rt", lock=lock)
    assert cache.lock is lock and cache.resolve_lock(True) is lock


def test_warmers_and_hot_are_shared_with_the_read_through() -> None:
    """Front doors register warmers on the cache; the engine sees the same list."""
    cache = sc.Cache([sc.MemoryTier()], namespace="rt")
    cache.warmers.append((print, [()]))
    assert cache.readthrough.warmers == [(print, [()])] and cache.hot is None


def test_after_fork_gives_a_new_origin() -> None:
    """A forked child is another process on the bus: a new origin."""
    cache = sc.Cache([sc.MemoryTier()], namespace="rt")
    before = cache.origin
    cache.after_fork()
    assert cache.origin != before and not cache.started

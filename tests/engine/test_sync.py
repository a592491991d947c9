"""``cache.sync``: the same cache from synchronous code, with thread-level single-flight."""

from __future__ import annotations

import threading

import pytest
import redis

import stratacache as sc


def test_sync_round_trip_through_redis(redis_url: str) -> None:
    """sync.set then sync.get through memory and Redis; a second cache sees the Redis copy."""
    cache = sc.Cache(tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)], namespace="s")
    other = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace="s")
    with cache.sync as sync, other.sync as other_sync:
        sync.set("k", {"a": (1, 2)}, ttl=30)
        assert sync.get("k") == {"a": (1, 2)}
        assert other_sync.get("k") == {"a": (1, 2)}
        assert redis.Redis.from_url(redis_url).exists("s:k") == 1
        sync.delete("k")
        assert other_sync.get("k") is None


def test_sync_single_flight_across_threads() -> None:
    """20 threads missing the same key run the loader once."""
    cache = sc.Cache(tiers=[sc.MemoryTier()], namespace="threads")
    calls = 0
    entered = threading.Event()
    release = threading.Event()

    def load() -> str:
        nonlocal calls
        calls += 1
        entered.set()
        release.wait(10)
        return "v"

    results: list[str] = []
    with cache.sync as sync:
        first = threading.Thread(target=lambda: results.append(sync.get_or_set("k", load)))
        first.start()
        entered.wait(10)
        others = [
            threading.Thread(target=lambda: results.append(sync.get_or_set("k", load)))
            for _ in range(19)
        ]
        for t in others:
            t.start()
        waited = threading.Event()
        for _ in range(10_000):  # poll (bounded) until all 19 are waiting on the leader
            if cache.counters.coalesced >= 19:
                break
            waited.wait(0.001)
        release.set()
        for t in [first, *others]:
            t.join(10)
    assert calls == 1 and results == ["v"] * 20


def test_sync_get_many_and_invalidate_tags(redis_url: str) -> None:
    """get_many returns hits only; tag invalidation removes tagged entries in every tier."""
    cache = sc.Cache(tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)], namespace="st")
    with cache.sync as sync:
        sync.set("a", 1, tags=["t1"])
        sync.set("b", 2, tags=["t2"])
        assert sync.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
        sync.invalidate(tags=["t1"])
        assert sync.get_many(["a", "b"]) == {"b": 2}


def test_sync_bad_value_raises_and_writes_nothing() -> None:
    """sync.set of an unencodable value raises SerializationError."""
    memory = sc.MemoryTier()
    cache = sc.Cache(tiers=[memory], namespace="sbad")
    with cache.sync as sync:
        with pytest.raises(sc.SerializationError):
            sync.set("k", object())
        assert len(memory) == 0

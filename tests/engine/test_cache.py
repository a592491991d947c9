"""The async engine: read-through, backfill, TTLs, LRU bounds, single-flight, bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis

import stratacache as sc
from stratacache.core.clock import ManualClock


def _memory_cache(clock: ManualClock | None = None, **kw: Any) -> sc.Cache:
    return sc.Cache(tiers=[sc.MemoryTier(maxsize=100)], namespace="t", clock=clock, **kw)


async def test_get_or_set_runs_loader_once_then_hits() -> None:
    """The first call loads, the second is served from the cache."""
    calls = []
    async with _memory_cache() as cache:
        for _ in range(3):
            value = await cache.get_or_set("k", lambda: calls.append(1) or {"v": 1})
            assert value == {"v": 1}
    assert len(calls) == 1


async def test_async_loader_is_awaited() -> None:
    """An async loader's result, not its coroutine, is cached."""

    async def load() -> list[int]:
        return [1, 2]

    async with _memory_cache() as cache:
        assert await cache.get_or_set("k", load) == [1, 2]
        assert await cache.get("k") == [1, 2]


async def test_get_default_and_miss_sentinel() -> None:
    """A miss returns the default; a cached None is told apart with MISS."""
    async with _memory_cache() as cache:
        assert await cache.get("nope", default=sc.MISS) is sc.MISS
        await cache.set("none", None)
        assert await cache.get("none", default=sc.MISS) is None


async def test_ttl_expiry_with_injected_clock() -> None:
    """An entry is served before its TTL and not after."""
    clock = ManualClock()
    async with _memory_cache(clock) as cache:
        await cache.set("k", 1, ttl=10)
        clock.advance(9.9)
        assert await cache.get("k") == 1
        clock.advance(0.2)
        assert await cache.get("k") is None


async def test_lower_tier_hit_backfills_upper_tier(redis_url: str) -> None:
    """A value found only in Redis is written back into memory, so the next read is an L1 hit."""
    memory = sc.MemoryTier(maxsize=100)
    # no bus: the writer's overwrite message could evict the backfilled copy meanwhile
    writer = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace="bf", bus=False)
    reader = sc.Cache(tiers=[memory, sc.RedisTier(url=redis_url)], namespace="bf")
    async with writer, reader:
        await writer.set("k", {"from": "redis"}, ttl=60)
        assert memory.peek("bf:k") is None
        assert await reader.get("k") == {"from": "redis"}
        assert memory.peek("bf:k") is not None
        assert await reader.get("k") == {"from": "redis"}
        stats = reader.stats()["tiers"]
        assert stats["memory"]["hits"] == 1 and stats["redis"]["hits"] == 1


async def test_backfill_respects_upper_tier_ttl_cap(redis_url: str) -> None:
    """Memory keeps a backfilled entry only for its own TTL cap; Redis keeps it longer."""
    clock = ManualClock(start=2_000_000_000.0)
    memory = sc.MemoryTier(maxsize=100, ttl=5)
    cache = sc.Cache(tiers=[memory, sc.RedisTier(url=redis_url)], namespace="cap", clock=clock)
    async with cache:
        await cache.set("k", "v", ttl=60)
        l1 = memory.peek("cap:k")
        assert l1 is not None and l1.expires == pytest.approx(clock.time() + 5)
        clock.advance(6)
        assert await cache.get("k") == "v"
        assert cache.stats()["tiers"]["redis"]["hits"] == 1


async def test_lru_evicts_least_recently_used() -> None:
    """Over maxsize, the least recently used entry goes and evictions are counted."""
    memory = sc.MemoryTier(maxsize=3, policy="lru")
    async with sc.Cache(tiers=[memory], namespace="lru") as cache:
        for key in "abc":
            await cache.set(key, key)
        await cache.get("a")  # a is now most recent; b is the oldest
        await cache.set("d", "d")
        assert await cache.get("b") is None
        assert [await cache.get(k) for k in "acd"] == ["a", "c", "d"]
        assert cache.stats()["tiers"]["memory"]["evictions"] == 1


async def test_memory_tier_byte_bound() -> None:
    """With max_bytes, large values push older ones out and the total stays bounded."""
    memory = sc.MemoryTier(maxsize=1000, max_bytes=50_000)
    async with sc.Cache(tiers=[memory], namespace="bytes") as cache:
        for i in range(20):
            await cache.set(f"k{i}", "x" * 10_000)
        assert memory.currsize <= 50_000
        assert len(memory) < 20 and await cache.get("k19") == "x" * 10_000


async def test_single_flight_200_callers_one_load() -> None:
    """200 concurrent misses of one key run the loader exactly once and all get its value."""
    calls = 0
    entered, release = asyncio.Event(), asyncio.Event()

    async def load() -> str:
        nonlocal calls
        calls += 1
        entered.set()
        await release.wait()
        return "value"

    async with _memory_cache() as cache:
        tasks = [asyncio.ensure_future(cache.get_or_set("hot", load)) for _ in range(200)]
        await entered.wait()
        release.set()
        results = await asyncio.gather(*tasks)
    assert calls == 1 and results == ["value"] * 200
    assert cache.stats()["engine"]["coalesced"] == 199


async def test_loader_error_propagates_unchanged() -> None:
    """The loader's own exception object reaches the caller; nothing is cached."""
    error = KeyError("upstream")

    def load() -> None:
        raise error

    async with _memory_cache() as cache:
        with pytest.raises(KeyError) as caught:
            await cache.get_or_set("k", load)
        assert caught.value is error
        assert await cache.get("k", default=sc.MISS) is sc.MISS


async def test_unserializable_value_writes_nothing(redis_url: str) -> None:
    """set() of an unencodable value raises SerializationError and no tier holds the key."""
    memory = sc.MemoryTier()
    cache = sc.Cache(tiers=[memory, sc.RedisTier(url=redis_url)], namespace="bad")
    async with cache:
        with pytest.raises(sc.SerializationError, match="object"):
            await cache.set("k", {"x": object()})
        with pytest.raises(sc.SerializationError):
            await cache.set_many({"good": 1, "bad": object()})
        assert len(memory) == 0
        assert redis.Redis.from_url(redis_url).keys("bad:*") == []


async def test_bad_keys_raise_key_error_at_call_site() -> None:
    """Non-string, empty or overlong keys raise CacheKeyError."""
    async with _memory_cache() as cache:
        for bad in (1, "", "x" * 5000):
            with pytest.raises(sc.CacheKeyError):
                await cache.set(bad, 1)  # type: ignore[arg-type]
        with pytest.raises(sc.ConfigError):
            await cache.invalidate(keys="single-string")


def test_bad_configuration_is_refused() -> None:
    """No tiers, a bad namespace, duplicate tier names or a bad TTL raise ConfigError."""
    with pytest.raises(sc.ConfigError):
        sc.Cache(tiers=[])
    with pytest.raises(sc.ConfigError):
        sc.Cache(tiers=[sc.MemoryTier()], namespace="a:b")
    with pytest.raises(sc.ConfigError):
        sc.Cache(tiers=[sc.MemoryTier(), sc.MemoryTier()])
    with pytest.raises(sc.ConfigError):
        sc.Cache(tiers=[sc.MemoryTier()], default_ttl=-1)
    with pytest.raises(sc.ConfigError):
        sc.MemoryTier(maxsize=0)


async def test_get_many_and_set_many() -> None:
    """set_many stores all; get_many returns only the hits."""
    async with _memory_cache() as cache:
        await cache.set_many({"a": 1, "b": (2,)}, ttl=60)
        assert await cache.get_many(["a", "b", "c"]) == {"a": 1, "b": (2,)}


async def test_invalidate_keys_tags_and_prefix() -> None:
    """invalidate removes the named keys, the tagged entries and the prefixed keys only."""
    async with _memory_cache() as cache:
        await cache.set("report:1", 1)
        await cache.set("report:2", 2)
        await cache.set("user:1", "u1", tags=["org:1"])
        await cache.set("user:2", "u2", tags=["org:2"])
        await cache.set("plain", "p")
        await cache.invalidate(prefix="report:")
        await cache.invalidate(tags=["org:1"])
        got = await cache.get_many(["report:1", "report:2", "user:1", "user:2", "plain"])
        assert got == {"user:2": "u2", "plain": "p"}
        await cache.delete("plain")
        assert await cache.get("plain") is None


async def test_clear_removes_only_own_namespace(redis_url: str) -> None:
    """clear() empties this namespace in every tier and leaves other namespaces alone."""
    mine = sc.Cache(tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)], namespace="mine")
    other = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace="other")
    async with mine, other:
        await mine.set("k", 1)
        await other.set("k", 2)
        await mine.clear()
        assert await mine.get("k") is None
        assert await other.get("k") == 2


async def test_cache_none_false_does_not_store_none() -> None:
    """With cache_none=False, a None result is returned but loaded again next time."""
    calls = []
    async with _memory_cache(cache_none=False) as cache:
        for _ in range(2):
            assert await cache.get_or_set("k", lambda: calls.append(1)) is None
    assert len(calls) == 2


async def test_stats_report_hit_rates() -> None:
    """stats() gives per-tier hits, misses and hit_rate, and engine load counts."""
    async with _memory_cache() as cache:
        await cache.get_or_set("k", lambda: 1)
        await cache.get("k")
        await cache.get("k")
        stats = cache.stats()
    tier = stats["tiers"]["memory"]
    assert (tier["hits"], tier["misses"]) == (2, 1)
    assert tier["hit_rate"] == pytest.approx(2 / 3)
    assert stats["engine"]["loads"] == 1


class _PausingRedisTier(sc.RedisTier):
    """A real Redis tier whose ``get_many`` waits on a gate after reading (to interleave)."""

    def __init__(self, url: str) -> None:
        super().__init__(url=url)
        self.read_done = asyncio.Event()
        self.gate = asyncio.Event()

    async def get_many(self, keys: Any) -> Any:
        found = await super().get_many(keys)
        self.read_done.set()
        await self.gate.wait()
        return found


async def test_get_many_backfill_cannot_outlive_an_invalidation(redis_url: str) -> None:
    """An invalidation landing between get_many's Redis read and its backfill wins."""
    slow = _PausingRedisTier(redis_url)
    cache = sc.Cache(tiers=[sc.MemoryTier(), slow], namespace="gm")
    writer = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace="gm")
    async with cache, writer:
        await writer.set("k", "old")
        reader = asyncio.ensure_future(cache.get_many(["k"]))
        await slow.read_done.wait()
        await cache.invalidate(keys=["k"])
        slow.gate.set()  # the backfill now runs after the invalidation returned
        assert await reader == {"k": "old"}  # it began before the invalidation returned
        assert await cache.get("k") is None


async def test_oversized_overwrite_leaves_no_old_value() -> None:
    """A value too big for the byte budget replaces nothing: the old one is gone, not kept."""
    memory = sc.MemoryTier(max_bytes=2000)
    async with sc.Cache(tiers=[memory], namespace="big") as cache:
        await cache.set("k", "small", tags=["t"])
        await cache.set("k", "x" * 5000)
        assert await cache.get("k") is None
        assert len(memory) == 0


async def test_explicit_set_wins_over_a_load_that_began_before_it(redis_url: str) -> None:
    """A loader started before set(k, new) cannot store its older result over it."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def old_loader() -> str:
        entered.set()
        await release.wait()
        return "old"

    cache = sc.Cache(tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)], namespace="lost")
    other = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace="lost")
    async with cache, other:
        loading = asyncio.ensure_future(cache.get_or_set("k", old_loader))
        await entered.wait()
        await cache.set("k", "new")
        release.set()
        assert await loading == "old"  # its caller asked before the write
        assert await cache.get("k") == "new"
        assert await other.get("k") == "new"


async def test_hit_and_evicted_signals(redis_url: str) -> None:
    """``hit`` names the tier that answered; ``evicted`` names what LRU dropped."""
    hits: list[tuple[str, str]] = []
    evicted: list[str] = []
    cache = sc.Cache(tiers=[sc.MemoryTier(maxsize=1), sc.RedisTier(url=redis_url)], namespace="sig")
    with (
        sc.signals.hit.connected_to(lambda _s, key, tier: hits.append((key, tier)), sender=cache),
        sc.signals.evicted.connected_to(lambda _s, key, tier: evicted.append(key), sender=cache),
    ):
        async with cache:
            await cache.set("a", 1)
            await cache.set("b", 2)  # evicts a from memory
            assert await cache.get("a") == 1  # from Redis, backfilled (evicting b)
            assert await cache.get("a") == 1  # from memory
    assert hits == [("sig:a", "redis"), ("sig:a", "memory")]
    assert evicted == ["sig:a", "sig:b"]


async def test_fast_path_deadline_follows_early_refresh_beta() -> None:
    """With a larger XFetch beta, the memory copy stops skipping the check earlier."""
    clock = ManualClock()
    caches = [
        sc.Cache(tiers=[sc.MemoryTier()], namespace=f"b{i}", clock=clock, early_refresh_beta=b)
        for i, b in enumerate((1.0, 4.0))
    ]
    deadlines = []
    for cache in caches:
        async with cache:
            now = clock.time()
            # a loader that took exactly 0.25 s: the cost is injected, not measured
            written = cache.policy.make(1, now, cost=0.25)
            assert await cache.tiers.write(cache.full_key("k"), written, None, now)
            entry = cache.tiers.slots[0].tier.peek(cache.full_key("k"))  # type: ignore[attr-defined]
            deadlines.append(entry.deadline - now)
    assert deadlines == [300 - 10 * 0.25 * 1.0, 300 - 10 * 0.25 * 4.0]

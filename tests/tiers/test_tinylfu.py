"""W-TinyLFU, the memory tier's default policy: deterministic hit counts, scans, shifts, bounds."""

from __future__ import annotations

import random

import pytest

import stratacache as sc
from stratacache.core.errors import ConfigError
from stratacache.testing import TierConformance
from stratacache.tiers.memory import MemoryTier
from stratacache.tiers.tinylfu import FrequencySketch, TinyLFU


def _zipf(n: int, keys: int, seed: int, prefix: str = "k") -> list[str]:
    """``n`` seeded reads, key rank r read with weight 1/r (the same in every process)."""
    rng = random.Random(seed)
    weights = [1.0 / r for r in range(1, keys + 1)]
    return [f"{prefix}{i}" for i in rng.choices(range(keys), weights=weights, k=n)]


def _replay(tier: MemoryTier, trace: list[str]) -> list[bool]:
    """Read every key, store it on a miss; which reads hit."""
    hits = []
    for key in trace:
        hit = tier.get_sync(key) is not None
        if not hit:
            tier.set_sync(key, sc.Entry(key, 0.0))
        hits.append(hit)
    return hits


class TestMemoryTierLRU(TierConformance):
    """The memory tier with the LRU policy still passes the conformance suite."""

    @pytest.fixture
    def tier(self) -> MemoryTier:
        return MemoryTier(maxsize=1000, policy="lru")


def test_tinylfu_is_the_default() -> None:
    """A plain MemoryTier uses W-TinyLFU; an unknown policy is a ConfigError."""
    assert MemoryTier().policy == "tinylfu"
    with pytest.raises(ConfigError, match="policy"):
        MemoryTier(policy="lfu")


def test_seeded_trace_known_hit_counts() -> None:
    """A seeded Zipf trace gives the same hit counts on every run, and beats LRU."""
    trace = _zipf(20_000, 5_000, seed=3)
    tinylfu = sum(_replay(MemoryTier(maxsize=200), trace))
    lru = sum(_replay(MemoryTier(maxsize=200, policy="lru"), trace))
    assert (tinylfu, lru) == (TINYLFU_HITS, LRU_HITS)
    assert tinylfu > lru


TINYLFU_HITS = 12_406
LRU_HITS = 10_501


def test_sketch_positions_are_stable() -> None:
    """Counter positions come from CRC-32 and fixed multipliers, not the process's hash seed."""
    assert FrequencySketch(1000).slots("k1") == SLOTS_K1


SLOTS_K1 = (8068, 10293, 5523, 6252)


def test_scan_does_not_evict_the_hot_set() -> None:
    """After a one-off scan of 10x the capacity, every hot key is still in memory."""
    tier = MemoryTier(maxsize=100)
    hot = [f"hot{i}" for i in range(50)]
    _replay(tier, hot * 10)
    _replay(tier, [f"scan{i}" for i in range(1_000)])
    assert all(tier.peek(key) is not None for key in hot)


def test_lru_loses_the_hot_set_to_a_scan() -> None:
    """The same scan flushes an LRU tier: the test above measures something."""
    tier = MemoryTier(maxsize=100, policy="lru")
    hot = [f"hot{i}" for i in range(50)]
    _replay(tier, hot * 10)
    _replay(tier, [f"scan{i}" for i in range(1_000)])
    assert not any(tier.peek(key) is not None for key in hot)


def test_recovers_after_a_popularity_shift() -> None:
    """When the popular keys change, the hit ratio is back within 10% after 35x maxsize reads."""
    tier = MemoryTier(maxsize=200)
    before = _replay(tier, _zipf(20_000, 5_000, seed=1, prefix="a"))
    after = _replay(tier, _zipf(20_000, 5_000, seed=2, prefix="b"))
    steady = sum(before[-5_000:]) / 5_000
    recovered = sum(after[7_000:12_000]) / 5_000
    assert recovered >= 0.9 * steady


@pytest.mark.parametrize("maxsize", [1, 10, 1_000, 50_000])
def test_sketch_memory_is_bounded_by_maxsize(maxsize: int) -> None:
    """Sketch and doorkeeper take at most 64 bytes per entry (2 x 16, rounded) and never grow."""
    policy = TinyLFU(maxsize)
    door = policy.sketch.door
    size = len(policy.sketch.table) + (len(door) if door is not None else 0)
    assert size <= 64 * maxsize
    for i in range(20_000):
        policy.record_miss(f"x{i}")
        for key in policy.add(f"x{i}"):
            assert key not in policy
    assert len(policy.sketch.table) + (len(door) if door is not None else 0) == size
    assert len(policy) <= maxsize


def test_counters_saturate_and_age() -> None:
    """A counter stops at 15 and is halved (doorkeeper cleared) every 25x maxsize reads."""
    policy = TinyLFU(10)
    for _ in range(40):
        policy.record_miss("k")
    assert policy.sketch.frequency("k") == 16  # 15 counted, 1 in the doorkeeper
    for i in range(250):
        policy.record_miss(f"other{i}")
    assert policy.sketch.frequency("k") <= 7


@pytest.mark.parametrize("maxsize", [1, 2, 3, 7, 100])
def test_never_holds_more_than_maxsize(maxsize: int) -> None:
    """Whatever the trace, the tier holds at most maxsize entries and evictions are counted."""
    tier = MemoryTier(maxsize=maxsize)
    trace = _zipf(3_000, 50, seed=maxsize)
    _replay(tier, trace)
    assert len(tier) <= maxsize
    assert tier.evictions >= len(set(trace)) - maxsize


def test_byte_bound_holds() -> None:
    """With max_bytes, the stored entries' sizes stay within the byte budget."""
    tier = MemoryTier(maxsize=1_000, max_bytes=10_000)
    for key in _zipf(2_000, 500, seed=5):
        if tier.get_sync(key) is None:
            tier.set_sync(key, sc.Entry(key, 0.0, size=300))
        assert tier.currsize <= 10_000
    assert 0 < len(tier) <= 10_000 // 500


def test_a_large_new_entry_is_stored_over_smaller_ones() -> None:
    """An entry that fits the byte budget alone is stored; older entries make room for it."""
    tier = MemoryTier(maxsize=100, max_bytes=5_000)
    for i in range(5):
        tier.get_sync(f"small{i}")
        tier.set_sync(f"small{i}", sc.Entry(i, 0.0, size=500))
    big = sc.Entry("big", 0.0, size=4_500)
    assert tier.set_sync("big", big, tier.lease_sync("big", ()))
    assert tier.peek("big") is big
    assert tier.currsize <= 5_000


def test_evicted_entries_are_killed_and_reported() -> None:
    """Every entry dropped for room is killed (decorator memos see it) and reported to on_evict."""
    tier = MemoryTier(maxsize=5)
    reported: list[str] = []
    tier.on_evict = reported.append
    entries = {f"k{i}": sc.Entry(i, 0.0) for i in range(20)}
    for key, entry in entries.items():
        tier.get_sync(key)
        tier.set_sync(key, entry)
    assert len(reported) == 15
    assert all(not entries[key].alive for key in reported)
    assert all(entries[key].alive for key in entries if key not in reported)


def test_unlocked_touch_counts_as_a_read() -> None:
    """A decorator's touch is replayed under the lock: the touched key wins admission later."""
    tier = MemoryTier(maxsize=3)
    for key in "abc":
        tier.get_sync(key)
        tier.set_sync(key, sc.Entry(key, 0.0))
    for _ in range(5):
        tier.touch("a")
        tier.touch("b")
        tier.touch("c")
    tier.touch("gone")  # a key evicted meanwhile: ignored
    for i in range(20):
        tier.get_sync(f"n{i}")
        tier.set_sync(f"n{i}", sc.Entry(i, 0.0))
    assert sum(tier.peek(key) is not None for key in "abc") >= 2


def test_decorator_memo_follows_tinylfu_evictions() -> None:
    """An entry the policy dropped is recomputed, not served from the decorator's memo."""
    memory = MemoryTier(maxsize=2)
    cache = sc.Cache(tiers=[memory], namespace="t")
    calls: list[int] = []

    @cache.cached(ttl=60)
    def f(x: int) -> int:
        calls.append(x)
        return x * 10

    assert [f(x) for x in (1, 2, 3)] == [10, 20, 30]
    assert memory.evictions >= 1
    assert [f(x) for x in (1, 2, 3)] == [10, 20, 30]
    assert len(calls) > 3  # at most two of the three fit: the others were loaded again


async def test_full_cache_with_redis_serves_every_value(redis_url: str) -> None:
    """A memory (W-TinyLFU) + Redis cache returns the right value for every key of a trace."""
    memory = MemoryTier(maxsize=20)
    async with sc.Cache(tiers=[memory, sc.RedisTier(url=redis_url)], namespace="adm") as cache:
        for i in range(100):
            await cache.set(f"k{i}", i)
        for key in _zipf(1_000, 100, seed=9):
            assert await cache.get(key) == int(key[1:])
        assert len(memory) <= 20
        assert cache.stats()["tiers"]["memory"]["hits"] > 0


def test_admits_every_backfill_until_full() -> None:
    """Until the area is full, any key is worth a place (nothing would be displaced)."""
    policy = TinyLFU(maxsize=4)
    policy.record_miss("cold")
    assert policy.admits("cold")


def test_admits_a_backfill_only_if_read_more_than_the_victim() -> None:
    """Once full, a key read once loses to main's oldest key; one read more often wins."""
    policy = TinyLFU(maxsize=4)
    for key in ("a", "b", "c", "d"):
        for _ in range(3):
            policy.record_miss(key)
        policy.add(key)
    policy.record_miss("once")
    assert not policy.admits("once")
    for _ in range(8):
        policy.record_miss("often")
    assert policy.admits("often")


def test_lru_tier_has_no_admission_filter() -> None:
    """Only W-TinyLFU declines backfills; an LRU memory tier keeps every one."""
    assert MemoryTier(policy="lru").admits is None
    assert MemoryTier().admits is not None


def test_admits_a_resident_key() -> None:
    """A key already held is always admitted: its older copy must be replaced, not kept."""
    policy = TinyLFU(maxsize=4)
    policy.record_miss("once")
    policy.add("once")
    for key in ("a", "b", "c"):
        for _ in range(8):
            policy.record_miss(key)
        policy.add(key)
    assert "once" in policy
    policy.record_miss("other")
    assert not policy.admits("other")  # read as often as "once", and not resident
    assert policy.admits("once")

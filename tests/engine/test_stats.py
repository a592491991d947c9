"""``stats()``: plain counters, and TypedDicts that describe exactly what it returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import stratacache as sc
from stratacache.engine.stats import (
    LATENCY_BUCKETS,
    EngineStatsReport,
    FunctionStats,
    FunctionStatsReport,
    LatencyHistogram,
    StatsReport,
    TierStats,
    TierStatsReport,
)


def _keys(report: type) -> tuple[set[str], set[str]]:
    """(required, optional) keys of a TypedDict whose annotations are strings."""
    annotations: dict[str, Any] = report.__annotations__
    optional = {k for k, v in annotations.items() if "NotRequired[" in str(v)}
    return set(annotations) - optional, optional


def _check(data: dict[str, Any], report: type) -> None:
    required, optional = _keys(report)
    assert required <= set(data) <= required | optional, (report.__name__, sorted(data))


async def test_stats_have_exactly_the_documented_keys(tmp_path: Path) -> None:
    """Every tier, function and engine entry matches its TypedDict (memory and SQL tiers)."""
    cache = sc.Cache(
        tiers=[sc.MemoryTier(), sc.SQLTier(url=f"sqlite:///{tmp_path / 'c.db'}")], bus=False
    )

    @cache.cached(ttl=60)
    async def f(x: int) -> int:
        return x

    async with cache:
        await f(1)
        await f(1)
        stats = cache.stats()
    _check(dict(stats), StatsReport)
    assert set(stats["tiers"]) == {"memory", "sql"}
    for tier in stats["tiers"].values():
        _check(dict(tier), TierStatsReport)
    for function in stats["functions"].values():
        _check(dict(function), FunctionStatsReport)
    _check(dict(stats["engine"]), EngineStatsReport)
    assert cache.sync.stats()["engine"] == stats["engine"]


def test_function_stats_fold_fast_hits_into_hits() -> None:
    """``as_dict`` reports fast hits as hits, with the hit rate over all lookups."""
    data = FunctionStats(fast_hits=3, hits=1, misses=4).as_dict()
    assert (data["hits"], data["misses"], data["hit_rate"]) == (4, 4, 0.5)
    assert "fast_hits" not in data


def test_tier_stats_hit_rate_is_zero_without_lookups() -> None:
    """No lookups yet: a hit rate of 0.0, never a division by zero."""
    assert TierStats().as_dict()["hit_rate"] == 0.0
    assert TierStats(hits=1, misses=3).as_dict(extra_hits=1)["hit_rate"] == 0.4


def test_latency_histogram_buckets_and_sum() -> None:
    """A duration lands in the first bucket at or above it; beyond them all, in the last."""
    histogram = LatencyHistogram()
    histogram.observe(LATENCY_BUCKETS[0])
    histogram.observe(LATENCY_BUCKETS[-1] * 10)
    assert histogram.counts[0] == 1 and histogram.counts[-1] == 1
    assert histogram.sum == LATENCY_BUCKETS[0] + LATENCY_BUCKETS[-1] * 10


async def test_redis_tier_stats_have_the_documented_keys(redis_url: str) -> None:
    """A Redis tier's entry in ``stats()["tiers"]`` matches ``TierStatsReport`` too."""
    cache = sc.Cache(tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)], bus=False)
    async with cache:
        await cache.set("k", 1)
        await cache.get("k")
        stats = cache.stats()
    for tier in stats["tiers"].values():
        _check(dict(tier), TierStatsReport)

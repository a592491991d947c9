"""``points()``: what a scrape reads from ``cache.stats()``, as plain points."""

from __future__ import annotations

import stratacache as sc
from stratacache.metrics.points import FAMILIES, points


async def test_points_carry_the_stats_values() -> None:
    """Tier and function counters become points labelled by namespace and tier/function."""
    cache = sc.Cache(tiers=[sc.MemoryTier()], bus=False, namespace="pts")

    @cache.cached(ttl=60, name="square")
    async def square(x: int) -> int:
        return x * x

    async with cache:
        await square(3)
        await square(3)
        stats = cache.stats()
        found = {(p.family.name, p.labels): p.value for p in points(cache)}
    assert found[("tier_hits", ("pts", "memory"))] == stats["tiers"]["memory"]["hits"] == 1
    assert found[("function_misses", ("pts", "square"))] == 1
    assert found[("function_hit_ratio", ("pts", "square"))] == 0.5
    assert found[("engine_loads", ("pts",))] == stats["engine"]["loads"]


def test_every_point_family_is_declared() -> None:
    """Tier and function families come from the declared table (help text and labels)."""
    cache = sc.Cache(tiers=[sc.MemoryTier()], bus=False)
    for point in points(cache):
        name = point.family.name
        assert name.startswith("engine_") or FAMILIES[name] == point.family

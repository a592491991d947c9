"""Prometheus exposition: counters read from ``cache.stats()`` at scrape time."""

from __future__ import annotations

import gc
import urllib.request

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import stratacache as sc
from stratacache.metrics import CacheCollector, instrument, start_http_server


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a real scrape, keyed by name and sorted labels."""
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def tier(ns: str, name: str) -> tuple[tuple[str, str], ...]:
    return (("namespace", ns), ("tier", name))


async def test_scrape_matches_stats() -> None:
    """Tier, function and engine counters in the scrape equal ``cache.stats()``."""
    cache = sc.Cache([sc.MemoryTier(maxsize=2, policy="lru")], namespace="m1")
    registry = CollectorRegistry()
    instrument(cache, registry=registry)

    @cache.cached(ttl=60)
    async def square(x: int) -> int:
        return x * x

    for x in (1, 1, 2, 3, 1):  # maxsize 2: 3 evicts 1, so the last call is a miss
        await square(x)
    await cache.set("k", 1)
    await cache.delete("k")

    stats = cache.stats()
    got = samples(registry)
    memory = stats["tiers"]["memory"]
    for field in ("hits", "misses", "sets", "deletes", "errors", "evictions"):
        assert got[(f"stratacache_tier_{field}_total", tier("m1", "memory"))] == memory[field]
    assert memory["evictions"] >= 1
    assert got[("stratacache_tier_hit_ratio", tier("m1", "memory"))] == pytest.approx(
        memory["hit_rate"]
    )
    fn_name = next(iter(stats["functions"]))
    fn_labels = (("function", fn_name), ("namespace", "m1"))
    assert got[("stratacache_function_hits_total", fn_labels)] == 1
    assert got[("stratacache_function_misses_total", fn_labels)] == 4
    assert got[("stratacache_engine_loads_total", (("namespace", "m1"),))] == 4
    await cache.close()


async def test_counts_are_read_at_scrape_time() -> None:
    """Hits after registration show up in the next scrape without any Prometheus call."""
    cache = sc.Cache([sc.MemoryTier()], namespace="m2")
    registry = CollectorRegistry()
    instrument(cache, registry=registry)
    await cache.set("k", 1)
    before = samples(registry)[("stratacache_tier_hits_total", tier("m2", "memory"))]
    for _ in range(5):
        await cache.get("k")
    after = samples(registry)[("stratacache_tier_hits_total", tier("m2", "memory"))]
    assert after - before == 5
    await cache.close()


async def test_loader_duration_histogram_counts_loads() -> None:
    """Each loader call is observed once in the loader-duration histogram."""
    cache = sc.Cache([sc.MemoryTier()], namespace="m3")
    registry = CollectorRegistry()
    instrument(cache, registry=registry)
    for key in ("a", "b", "a"):
        await cache.get_or_set(key, lambda: 1)
    got = samples(registry)
    assert got[("stratacache_loader_duration_seconds_count", (("namespace", "m3"),))] == 2
    await cache.close()


async def test_several_caches_share_families() -> None:
    """Two caches on one registry are told apart by their namespace label."""
    registry = CollectorRegistry()
    one = sc.Cache([sc.MemoryTier()], namespace="left")
    two = sc.Cache([sc.MemoryTier(), sc.MemoryTier(name="second")], namespace="right")
    instrument(one, registry=registry)
    metrics = instrument(two, registry=registry)
    await one.set("k", 1)
    await one.get("k")
    got = samples(registry)
    assert got[("stratacache_tier_hits_total", tier("left", "memory"))] == 1
    assert got[("stratacache_tier_hits_total", tier("right", "memory"))] == 0
    assert ("stratacache_tier_hits_total", tier("right", "second")) in got
    metrics.remove(two)
    assert ("stratacache_tier_hits_total", tier("right", "memory")) not in samples(registry)
    metrics.unregister()
    assert not any(name.startswith("stratacache_") for name, _ in samples(registry))
    await one.close()
    await two.close()


def test_collector_holds_caches_weakly() -> None:
    """A cache that is garbage-collected leaves the exposition."""
    collector = CacheCollector([sc.Cache([sc.MemoryTier()], namespace="gone")])
    gc.collect()
    assert collector.caches == []
    families = {f.name: f for f in collector.collect()}
    assert families["stratacache_tier_hits"].samples == []


def test_http_server_serves_metrics() -> None:
    """``start_http_server`` serves the cache's counters on /metrics over loopback."""
    cache = sc.Cache([sc.MemoryTier()], namespace="http")
    cache.sync.set("k", 1)
    cache.sync.get("k")
    registry = CollectorRegistry()
    server, thread = start_http_server(0, caches=[cache], registry=registry)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
        assert 'stratacache_tier_hits_total{namespace="http",tier="memory"} 1.0' in body
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        cache.sync.close()

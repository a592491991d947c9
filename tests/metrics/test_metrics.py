"""Prometheus exposition: counters read from ``cache.stats()`` at scrape time."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import free_port
from tests.waiting import wait_until

import stratacache as sc
from stratacache.core.errors import ConfigError
from stratacache.metrics import CacheCollector, instrument, start_http_server

ROOT = Path(__file__).resolve().parents[2]


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


# -- fleet metrics -------------------------------------------------------------------------------
def family_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition text, keyed by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_function_and_tier_help_texts_differ() -> None:
    """A per-function counter is not described as a tier's lookups."""
    registry = CollectorRegistry()
    instrument(sc.Cache([sc.MemoryTier()], namespace="help"), registry=registry)
    text = generate_latest(registry).decode()
    assert "# HELP stratacache_function_hits_total Calls of this decorated function" in text
    assert "# HELP stratacache_tier_hits_total Lookups this tier answered" in text


async def test_remote_operations_are_timed_and_memory_is_not(redis_url: str) -> None:
    """Each Redis call lands in the latency histogram; L1 calls are never timed."""
    cache = sc.Cache([sc.MemoryTier(), sc.RedisTier(url=redis_url)], namespace="lat")
    registry = CollectorRegistry()
    instrument(cache, registry=registry)
    async with cache:
        await cache.set("k", 1)
        for _ in range(4):
            await cache.get("k")  # memory hits: Redis is not asked
        await cache.get("absent")  # one Redis get
    got = samples(registry)
    redis_get = (("namespace", "lat"), ("operation", "get"), ("tier", "redis"))
    assert got[("stratacache_tier_operation_duration_seconds_count", redis_get)] == 1
    assert (
        got[
            (
                "stratacache_tier_operation_duration_seconds_bucket",
                (("le", "+Inf"), *redis_get),
            )
        ]
        == 1
    )
    assert not any(
        name.startswith("stratacache_tier_operation") and ("tier", "memory") in labels
        for name, labels in got
    )
    assert cache.tiers.slots[0].latency is None


async def test_invalidations_are_counted_by_kind() -> None:
    """Keys, tags, prefixes and clears each count under their kind."""
    cache = sc.Cache([sc.MemoryTier()], namespace="inv")
    registry = CollectorRegistry()
    instrument(cache, registry=registry)
    await cache.invalidate(keys=["a", "b"], tags=["t"])
    await cache.invalidate(prefix="p:")
    await cache.clear()
    got = samples(registry)

    def count(kind: str) -> float:
        return got[
            (
                "stratacache_invalidations_total",
                (("kind", kind), ("namespace", "inv"), ("origin", "local")),
            )
        ]

    assert (count("keys"), count("tags"), count("prefixes"), count("clear")) == (1, 1, 1, 1)
    await cache.close()


async def test_l1_bytes_and_breaker_state_are_exported() -> None:
    """A byte-bounded memory tier exports its bytes; every tier its breaker state."""
    cache = sc.Cache([sc.MemoryTier(max_bytes=1 << 20)], namespace="bytes")
    registry = CollectorRegistry()
    instrument(cache, registry=registry)
    await cache.set("k", "x" * 1000)
    got = samples(registry)
    assert got[("stratacache_tier_bytes", tier("bytes", "memory"))] >= 1000
    assert got[("stratacache_tier_circuit_open", tier("bytes", "memory"))] == 0
    await cache.close()


def test_taken_port_without_multiprocess_mode_is_a_config_error() -> None:
    """A second start_http_server on one port says how to run several workers."""
    registry = CollectorRegistry()
    server, thread = start_http_server(0, registry=registry)
    try:
        with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR"):
            start_http_server(server.server_port, registry=CollectorRegistry())
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.slow
def test_two_uvicorn_workers_export_one_sum(redis_url: str, tmp_path: Path) -> None:
    """With two workers in multiprocess mode, any scrape counts every worker's traffic."""
    port, metrics_port = free_port(), free_port()
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        "REDIS_URL": redis_url,
        "METRICS_PORT": str(metrics_port),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "tests.metrics_app:app", "--workers", "2",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(f"{base}/admin/health"), what="the workers to serve")
        pids, requests = set(), 0
        deadline = time.monotonic() + 30
        while len(pids) < 2 or requests < 200:  # new connections spread over both workers
            assert time.monotonic() < deadline, "requests never reached both workers"
            pids.add(httpx.get(f"{base}/work/{requests % 10}").json()["pid"])
            requests += 1

        def totals(url: str, **headers: str) -> tuple[float, float]:
            text = httpx.get(url, headers=headers).text
            got = family_samples(text)
            function = [k for k in got if k[0] == "stratacache_function_hits_total"]
            hits = sum(got[k] for k in function)
            misses = sum(got[k] for k in got if k[0] == "stratacache_function_misses_total")
            return hits, misses

        admin = f"{base}/admin/metrics"
        auth = {"Authorization": "Bearer fleet-admin-token-0123456789"}
        for url, headers in ((admin, auth), (f"http://127.0.0.1:{metrics_port}/metrics", {})):
            wait_until(
                lambda url=url, headers=headers: sum(totals(url, **headers)) == requests,
                what=f"{url} to count {requests} requests (last: {totals(url, **headers)}) {_nonzero(url, headers)}",
            )
        # sequential requests: each key is loaded once, then read from Redis by the other worker
        assert totals(admin, **auth) == (requests - 10, 10)
        text = httpx.get(admin, headers=auth).text
        got = family_samples(text)
        assert any(
            name == "stratacache_tier_operation_duration_seconds_count"
            and ("tier", "redis") in labels
            for name, labels in got
        )
        assert proc.poll() is None, "a worker died"
    finally:
        proc.terminate()
        proc.wait(30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _nonzero(url: str, headers: dict[str, str]) -> list[tuple[str, float]]:
    got = family_samples(httpx.get(url, headers=headers).text)
    return [(f"{k[0]}{dict(k[1])}", v) for k, v in got.items() if k[0].endswith("_total") and v]


async def test_grafana_dashboard_uses_only_exported_metrics(redis_url: str) -> None:
    """Every metric the Grafana dashboard queries is one this package exports."""
    import json
    import re

    cache = sc.Cache([sc.MemoryTier(max_bytes=1 << 20), sc.RedisTier(url=redis_url)], namespace="g")
    registry = CollectorRegistry()
    instrument(cache, registry=registry)

    @cache.cached(ttl=60)
    async def one() -> int:
        return 1

    async with cache:
        await one()
        await cache.get("absent")
        await cache.invalidate(keys=["k"])
    exported = {name for name, _ in samples(registry)}
    exported |= {"stratacache_bus_connected"}  # only with a bus
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"stratacache_\w+", target["expr"])
    }
    assert queried and queried <= exported, queried - exported

"""A failing tier never raises into the caller: killed Redis, open circuit, recovery."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import stratacache as sc


async def test_redis_killed_mid_test_serves_from_memory_and_loader(
    redis_factory: Callable[..., Any],
) -> None:
    """With its Redis killed, the cache answers from memory or the loader and raises nothing."""
    server = redis_factory()
    memory = sc.MemoryTier()
    cache = sc.Cache(
        tiers=[memory, sc.RedisTier(url=server.url, socket_timeout=0.2)],
        namespace="chaos",
        breaker_threshold=3,
    )
    async with cache:
        await cache.set("warm", "from-memory")
        server.stop()
        assert await cache.get("warm") == "from-memory"
        for i in range(5):
            assert await cache.get_or_set(f"cold{i}", lambda i=i: i * 10) == i * 10
        await cache.set("written", 1)
        assert await cache.get("written") == 1
        await cache.invalidate(keys=["warm"], tags=["t"], prefix="p")
        assert await cache.get("warm") is None
        stats = cache.stats()["tiers"]["redis"]
        assert stats["errors"] >= 3
        assert stats["circuit_open"] is True
        assert stats["skipped"] > 0


async def test_tier_comes_back_after_restart(redis_factory: Callable[..., Any]) -> None:
    """After the server restarts on the same port and the breaker cools down, Redis is used again."""
    server = redis_factory()
    redis_tier = sc.RedisTier(url=server.url, socket_timeout=0.2)
    cache = sc.Cache(tiers=[redis_tier], namespace="back", breaker_threshold=1, breaker_reset=0.05)
    async with cache:
        server.stop()
        assert await cache.get_or_set("k", lambda: "loaded") == "loaded"
        assert cache.stats()["tiers"]["redis"]["circuit_open"] is True
        server.start()
        value = None
        for _ in range(200):  # poll until the breaker lets a probe through and it succeeds
            await cache.set("k2", "stored")
            value = await cache.get("k2")
            if value == "stored":
                break
            await _tick()
        assert value == "stored"
        assert cache.stats()["tiers"]["redis"]["circuit_open"] is False


def test_sync_facade_survives_killed_redis(redis_factory: Callable[..., Any]) -> None:
    """The sync API also answers from memory/loader when Redis is down."""
    server = redis_factory()
    cache = sc.Cache(
        tiers=[sc.MemoryTier(), sc.RedisTier(url=server.url, socket_timeout=0.2)],
        namespace="chaos-sync",
    )
    with cache.sync as sync:
        sync.set("k", "v")
        server.stop()
        assert sync.get("k") == "v"
        assert sync.get_or_set("cold", lambda: 42) == 42
        assert cache.stats()["tiers"]["redis"]["errors"] >= 1


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.01)


async def test_background_probe_brings_a_restarted_redis_back_within_a_second(
    redis_factory: Callable[..., Any], caplog: Any
) -> None:
    """No caller traffic needed: a probe closes the breaker < 1 s after Redis is back."""
    import logging
    import time

    from stratacache.engine import signals

    from ..waiting import poll

    server = redis_factory()
    cache = sc.Cache(
        tiers=[sc.RedisTier(url=server.url, socket_timeout=0.2)],
        namespace="probe",
        breaker_threshold=1,
        breaker_reset=60,  # a caller-driven cool-down would take a minute
    )
    changes: list[bool] = []

    def on_state(sender: Any, **payload: Any) -> None:
        changes.append(payload["open"])

    signals.breaker_state.connect(on_state, sender=cache)
    caplog.set_level(logging.INFO, logger="stratacache")
    async with cache:
        server.stop()
        for _ in range(20):  # many calls while open: still one log line and one signal
            assert await cache.get_or_set("k", lambda: "loaded") == "loaded"
        breaker = cache.tiers.slots[0].breaker
        assert breaker.is_open
        server.start()
        back = time.monotonic()
        await poll(lambda: not breaker.is_open, timeout=5, what="breaker closed by the probe")
        assert time.monotonic() - back < 1.0
        await cache.set("k2", "stored")
        assert await cache.get("k2") == "stored"
        stats = cache.stats()["tiers"]["redis"]
    signals.breaker_state.disconnect(on_state, sender=cache)
    assert changes == [True, False]
    assert stats["circuit_opened"] == 1 and stats["circuit_closed"] == 1
    assert stats["probes"] >= 1
    opened = [r for r in caplog.records if "circuit open" in r.getMessage()]
    closed = [r for r in caplog.records if "circuit closed" in r.getMessage()]
    assert len(opened) == 1 and len(closed) == 1


def test_probes_are_jittered_and_stop_when_the_tier_answers() -> None:
    """The prober waits at least 0.5x the interval between probes and stops after one success."""
    import threading

    from stratacache.engine.resilience import CircuitBreaker

    answered = threading.Event()
    calls: list[float] = []

    def probe() -> None:
        import time

        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("down")
        answered.set()

    breaker = CircuitBreaker("t", threshold=1, probe_interval=0.05)
    breaker.probe = probe
    breaker.failure()
    assert breaker.is_open and not breaker.allow()
    assert answered.wait(5)
    from ..waiting import wait_until

    wait_until(lambda: not breaker.is_open, timeout=5)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    # a sleep never ends early: each gap is at least the jitter's lower bound (0.5x the interval);
    # how late a busy machine wakes the prober is not asserted
    assert all(g >= 0.025 for g in gaps), gaps
    assert breaker.probes == 3 and breaker.probe_failures == 2
    assert breaker.allow()


async def test_after_an_outage_older_shared_entries_are_misses_for_the_grace_window(
    redis_factory: Callable[..., Any],
) -> None:
    """Another process's invalidation made while Redis was down waits in its replay queue;
    once Redis is back, this process must not serve the value Redis still holds: entries
    stored before the recovery are misses for ``outage_grace`` seconds (one reload each)."""
    from ..waiting import poll

    server = redis_factory()
    cache = sc.Cache(
        tiers=[sc.MemoryTier(ttl=30), sc.RedisTier(url=server.url, socket_timeout=0.2)],
        namespace="grace",
        breaker_threshold=1,
        bus=False,  # the other process's message is the replay, not the bus
    )
    loads: list[int] = []

    def load() -> int:
        loads.append(1)
        return len(loads)

    async with cache:
        assert await cache.get_or_set("k", load) == 1  # stored in memory and Redis
        server.stop()
        await cache.get("other")  # a failure opens the breaker
        breaker = cache.tiers.slots[1].breaker
        assert breaker.is_open
        server.start()  # no persistence: start it with the old value, as a promoted replica has
        raw = sc.RedisTier(url=server.url)
        await raw.start(sc.TierContext("grace"))
        await raw.set("grace:k", sc.Entry(1, 0.0))  # created long ago, as before the outage
        await raw.close()
        await poll(lambda: not breaker.is_open, timeout=5, what="breaker closed by the probe")
        assert await cache.get_or_set("k", load) == 2  # not the old 1 from memory or Redis
        assert await cache.get_or_set("k", load) == 2  # reloaded once, then served
        assert len(loads) == 2

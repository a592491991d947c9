"""The Redis invalidation bus: propagation to other caches' L1, echoes, and loss of the bus."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
from tests.waiting import poll

import stratacache as sc
from stratacache.core.fleet import Invalidation
from stratacache.engine import signals
from stratacache.fleet.bus import BusUnavailable, RedisBus, decode, encode


def make_cache(
    data_url: str, bus_url: str, namespace: str, staleness_bound: float = 1.0, **bus_options: Any
) -> sc.Cache:
    return sc.Cache(
        tiers=[sc.MemoryTier(maxsize=1000), sc.RedisTier(url=data_url)],
        namespace=namespace,
        bus=RedisBus(bus_url, **bus_options),
        staleness_bound=staleness_bound,
    )


def l1_has(cache: sc.Cache, key: str) -> bool:
    top: Any = cache.tiers.top
    return top.peek(cache.full_key(key)) is not None


@pytest.fixture
async def pair(redis_url: str) -> AsyncIterator[tuple[sc.Cache, sc.Cache]]:
    """Two caches of one namespace (two 'processes' by origin) sharing Redis and the bus."""
    namespace = "bus" + uuid.uuid4().hex[:8]
    one, two = (
        make_cache(redis_url, redis_url, namespace),
        make_cache(redis_url, redis_url, namespace),
    )
    async with one, two:
        yield one, two


async def test_key_invalidation_evicts_other_cache_l1(pair: tuple[sc.Cache, sc.Cache]) -> None:
    """An invalidation in one cache removes the key from the other cache's memory tier."""
    one, two = pair
    await two.set("k", 1)
    assert l1_has(two, "k")
    await one.invalidate(keys=["k"])
    await poll(lambda: not l1_has(two, "k"), what="remote eviction")
    assert await two.get("k") is None


async def test_tag_and_prefix_invalidations_propagate(pair: tuple[sc.Cache, sc.Cache]) -> None:
    """Tag and prefix invalidations reach the other cache's memory tier too."""
    one, two = pair
    await two.set("user:1", "a", tags=["org:1"])
    await two.set("report:1", "b")
    await two.set("other", "c")
    for key in ("user:1", "report:1", "other"):
        assert l1_has(two, key)
    await one.invalidate(tags=["org:1"], prefix="report:")
    await poll(lambda: not l1_has(two, "user:1") and not l1_has(two, "report:1"))
    assert l1_has(two, "other")
    assert await two.get("user:1") is None and await two.get("report:1") is None


async def test_overwrite_drops_other_cache_copy(pair: tuple[sc.Cache, sc.Cache]) -> None:
    """A set in one cache drops the other cache's older local copy, so it reads the new value."""
    one, two = pair
    bus: Any = two.bus
    await one.set("k", "old")
    await poll(lambda: bus.received >= 1, what="first overwrite message")
    assert await two.get("k") == "old" and l1_has(two, "k")
    await one.set("k", "new")
    await poll(lambda: not l1_has(two, "k"), what="overwrite message")
    assert await two.get("k") == "new"


async def test_own_messages_are_ignored(pair: tuple[sc.Cache, sc.Cache]) -> None:
    """A cache skips its own echoes: they are counted, not applied or announced twice."""
    one, two = pair
    bus_one: Any = one.bus
    bus_two: Any = two.bus
    seen: list[str] = []

    def on_invalidated(sender: Any, **payload: Any) -> None:
        if sender is one:
            seen.append(payload["origin"])

    signals.invalidated.connect(on_invalidated)
    try:
        await one.invalidate(keys=["k"], reason="test")
        await poll(lambda: bus_one.echoes >= 1 and bus_two.received >= 1)
    finally:
        signals.invalidated.disconnect(on_invalidated)
    assert seen == ["local"]
    assert bus_one.received == 0


async def test_unreadable_message_clears_local_tier(
    pair: tuple[sc.Cache, sc.Cache], redis_url: str
) -> None:
    """A message that does not decode may have been an invalidation: local tiers are dropped."""
    _one, two = pair
    await two.set("k", 1)
    assert l1_has(two, "k")
    bus: Any = two.bus
    client = redis.Redis.from_url(redis_url)
    try:
        client.publish(bus.channel, b"\xc1 not msgpack")
    finally:
        client.close()
    await poll(lambda: not l1_has(two, "k"), what="conservative clear")
    assert await two.get("k") == 1  # still in Redis: only the local copy was dropped


def test_message_round_trip() -> None:
    """Every field of an invalidation survives the wire format."""
    message = Invalidation(
        keys=("ns:a",),
        tags=("t",),
        prefixes=("ns:p",),
        clear=False,
        reason="why",
        origin="o",
        actor="alice",
        at=12.5,
        generation=3,
    )
    assert decode(encode(message)) == message
    assert decode(b"garbage").clear


async def test_bus_server_down_means_l1_is_not_trusted(
    redis_url: str, redis_factory: Callable[..., Any]
) -> None:
    """staleness_bound=0: while the bus is down a cache reads past its L1 (no stale read)."""
    bus_server = redis_factory()
    namespace = "down" + uuid.uuid4().hex[:8]
    one = make_cache(redis_url, bus_server.url, namespace)
    two = make_cache(redis_url, bus_server.url, namespace, 0, reconnect_max=0.05)
    async with one, two:
        calls: list[int] = []

        @two.cached(key="item:{n}")
        async def item(n: int) -> str:
            calls.append(n)
            return str(await one.get(f"src:{n}"))

        await two.set("k", "v1")
        await two.set("src:1", "s1")
        assert l1_has(two, "k")
        assert await item(1) == "s1" and await item(1) == "s1"  # second call: memo fast path
        bus_server.stop()
        await poll(lambda: not two.tiers.local_trusted, what="bus loss detected")
        assert not l1_has(two, "k")
        await one.set("k", "v2")  # its bus message is lost
        await one.set("src:1", "s2")
        await one.invalidate(keys=["item:1"])  # lost too
        assert await two.get("k") == "v2"
        assert not l1_has(two, "k")  # untrusted: nothing is kept locally either
        assert await item(1) == "s2"
        bus_server.start()
        await poll(lambda: two.tiers.local_trusted, timeout=10, what="bus reconnect")
        assert await two.get("k") == "v2"
        assert l1_has(two, "k")


async def test_killed_pubsub_connection_drops_l1_and_reconnects(
    pair: tuple[sc.Cache, sc.Cache], redis_url: str
) -> None:
    """CLIENT KILL TYPE pubsub: the cache reports the loss, drops its L1, and comes back."""
    one, two = pair
    states: list[bool] = []

    def on_state(sender: Any, connected: bool) -> None:
        if sender is two:
            states.append(connected)

    signals.bus_state.connect(on_state)
    try:
        await two.set("k", 1)
        entry = two.tiers.top.peek(two.full_key("k"))  # type: ignore[attr-defined]
        assert entry is not None and entry.alive
        client = redis.Redis.from_url(redis_url)
        try:
            assert client.client_kill_filter(_type="pubsub") >= 1
        finally:
            client.close()
        await poll(lambda: states[-2:] == [False, True], what="loss then reconnect")
    finally:
        signals.bus_state.disconnect(on_state)
    assert not entry.alive  # the memory tier dropped it when the loss was reported
    await one.invalidate(keys=["k"])
    await poll(lambda: two.bus.received >= 1, what="messages flow again")  # type: ignore[union-attr]


async def test_start_without_bus_serves_from_shared_tier(redis_url: str) -> None:
    """A cache whose bus cannot connect at start distrusts L1 but still serves from Redis."""
    from tests.conftest import free_port

    bus = RedisBus(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=0.2, reconnect_max=0.2)
    cache = sc.Cache(
        tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)],
        namespace="nobus",
        bus=bus,
        staleness_bound=0,
    )
    async with cache:
        assert not cache.tiers.local_trusted
        await cache.set("k", 1)
        assert await cache.get("k") == 1
        assert not l1_has(cache, "k")


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["sigstop", "kill"])
def test_writes_stay_fast_while_redis_is_unreachable(
    redis_factory: Callable[..., Any], fault: str
) -> None:
    """Redis hung or killed, default bus: once the bus has noticed (and the other processes
    surely have), set/delete/invalidate (async and sync) return within the tier's own
    operation timeouts, and the invalidations wait in the replay queue."""
    timeout = 0.25
    server = redis_factory()
    tier = sc.RedisTier(url=server.url, socket_timeout=timeout, socket_connect_timeout=timeout)
    cache = sc.Cache(tiers=[sc.MemoryTier(), tier], namespace="ff" + uuid.uuid4().hex[:6])
    durations: list[float] = []
    first: list[float] = []

    async def calls() -> None:
        async with cache:
            bus = cache.bus
            assert isinstance(bus, RedisBus) and bus.connected
            if fault == "sigstop":
                os.kill(server.proc.pid, signal.SIGSTOP)
            else:
                server.stop()
            try:
                started = time.monotonic()
                await cache.invalidate(keys=["first"])  # waits until others have noticed
                first.append(time.monotonic() - started)
                await poll(lambda: not bus.connected, what="the bus notices")
                for i in range(6):
                    for call in (
                        lambda i=i: cache.set(f"k{i}", i),
                        lambda i=i: cache.delete(f"k{i}"),
                        lambda i=i: cache.invalidate(keys=[f"k{i}"], tags=["t"]),
                    ):
                        started = time.monotonic()
                        await call()
                        durations.append(time.monotonic() - started)
                for i in range(3):
                    for sync_call in (
                        lambda i=i: cache.sync.set(f"s{i}", i),
                        lambda i=i: cache.sync.delete(f"s{i}"),
                        lambda i=i: cache.sync.invalidate(keys=[f"s{i}"]),
                    ):
                        started = time.monotonic()
                        await asyncio.to_thread(sync_call)
                        durations.append(time.monotonic() - started)
                assert cache.replay.pending, "the invalidations wait for Redis"
                started = time.monotonic()  # the bus itself: no connect attempt per publish
                with pytest.raises(BusUnavailable):
                    await bus.publish(Invalidation(keys=("x",)))
                assert time.monotonic() - started < 0.05
            finally:
                if fault == "sigstop":
                    os.kill(server.proc.pid, signal.SIGCONT)

    asyncio.run(calls())
    # the first waits at most 2 x health_interval (1 s) plus a publish timeout or two
    assert first[0] <= 2 * 1.0 + 3 * timeout + 0.5, first
    # before: ~4 s per call (publish connect attempts); now the shared tier's own attempts
    # (a timeout per tier operation: an invalidation deletes keys and bumps tags) at most
    assert max(durations) <= 3 * timeout + 0.5, durations
    assert sorted(durations)[len(durations) // 2] <= 2 * timeout + 0.1, durations

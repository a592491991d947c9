"""A cache used from one event loop after another, and what happens when the bus stops."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from tests.waiting import wait_until

import stratacache as sc
from stratacache.engine import signals
from stratacache.fleet.bus import RedisBus
from stratacache.fleet.hotkeys import HotKeys

STACKS = ["redis", "memory+redis", "memory+redis+bus", "memory+redis+tracking-bus"]


def build(stack: str, url: str, namespace: str) -> sc.Cache:
    tiers: list[Any] = [sc.RedisTier(url=url)]
    if stack.startswith("memory"):
        tiers.insert(0, sc.MemoryTier(maxsize=100))
    bus: Any = False  # no bus unless the stack names one (the default would add one)
    if stack.endswith("bus"):
        bus = RedisBus(url, tracking="tracking" in stack, reconnect_max=0.05)
    # staleness_bound=0: while the bus is down L1 is distrusted entirely, which these tests
    # observe (the bounded mode is tested in test_degradation)
    return sc.Cache(tiers=tiers, namespace=namespace, default_ttl=60, bus=bus, staleness_bound=0)


def l1_has(cache: sc.Cache, key: str) -> bool:
    top: Any = cache.tiers.top
    return hasattr(top, "peek") and top.peek(cache.full_key(key)) is not None


@pytest.fixture
def namespace() -> str:
    return "loops" + uuid.uuid4().hex[:8]


@pytest.fixture
def states() -> Iterator[list[tuple[object, bool]]]:
    """Every ``bus_state`` signal sent meanwhile, as (cache, connected)."""
    seen: list[tuple[object, bool]] = []

    def record(sender: Any, connected: bool) -> None:
        seen.append((sender, connected))

    signals.bus_state.connect(record)
    yield seen
    signals.bus_state.disconnect(record)


@pytest.mark.parametrize("loops", [2, 4])
@pytest.mark.parametrize("stack", STACKS)
def test_each_new_loop_reads_what_the_previous_ones_wrote(
    stack: str, loops: int, redis_url: str, namespace: str
) -> None:
    """Values, batches, loaders, decorators and invalidation work in every loop in turn."""
    cache = build(stack, redis_url, namespace)
    calls: list[int] = []

    @cache.cached(key="square:{n}")
    async def square(n: int) -> int:
        calls.append(n)
        return n * n

    async def round_(i: int) -> None:
        if i:
            assert await cache.get(f"k{i - 1}") == i - 1
            assert await cache.get_many([f"k{i - 1}", "nope"]) == {f"k{i - 1}": i - 1}
            assert await square(3) == 9  # stored by the first loop
        await cache.set(f"k{i}", i)
        await cache.set_many({f"m{i}": i})
        assert await cache.get_or_set(f"g{i}", lambda: i) == i
        assert await square(3) == 9
        await cache.invalidate(keys=[f"m{i}"])
        assert await cache.get(f"m{i}") is None

    for i in range(loops):
        asyncio.run(round_(i))
    assert calls == [3]
    asyncio.run(cache.close())


@pytest.mark.parametrize("stack", ["memory+redis+bus", "memory+redis+tracking-bus"])
@pytest.mark.parametrize("writer", ["sync", "async"])
def test_an_overwrite_made_between_loops_is_seen_in_the_next(
    stack: str, writer: str, redis_url: str, namespace: str
) -> None:
    """Another process's overwrite while no loop runs still evicts this process's L1."""
    app = build(stack, redis_url, namespace)
    other = build(stack, redis_url, namespace)

    async def first() -> Any:
        await app.set("price", 10)
        return await app.get("price")

    assert asyncio.run(first()) == 10
    tracker = _bus(app).tracker
    if tracker is not None:  # tracking reports our own write too: let it evict, then refill
        wait_until(lambda: tracker.received >= 1, what="our write reported")
        assert asyncio.run(app.get("price")) == 10
    assert l1_has(app, "price")
    if writer == "sync":
        other.sync.set("price", 20)
    else:
        asyncio.run(other.set("price", 20))
    # no loop of ``app`` runs now: its bus thread applies the message all the same
    wait_until(lambda: not l1_has(app, "price"), what="eviction without a running loop")

    async def later() -> Any:
        return await app.get("price")

    assert asyncio.run(later()) == 20
    other.sync.close()
    asyncio.run(app.close())


@pytest.mark.parametrize("loops", [2, 3])
def test_fleet_lock_works_in_each_new_loop(loops: int, redis_url: str, namespace: str) -> None:
    """``lock=True`` loads once per key in every loop; the lock's listener follows the loop."""
    cache = sc.Cache(
        tiers=[sc.MemoryTier(maxsize=10), sc.RedisTier(url=redis_url)],
        namespace=namespace,
        lock=sc.RedisLock(redis_url),
    )
    calls: list[int] = []

    async def load(i: int) -> int:
        calls.append(i)
        await asyncio.sleep(0.01)
        return i

    async def round_(i: int) -> list[int]:
        got = await asyncio.gather(
            *(cache.get_or_set(f"k{i}", lambda: load(i), lock=True) for _ in range(5))
        )
        assert cache.readthrough.lock is not None and cache.readthrough.lock.subscribed
        return list(got)

    for i in range(loops):
        assert asyncio.run(round_(i)) == [i] * 5
    assert calls == list(range(loops))
    asyncio.run(cache.close())


def test_hot_key_tracker_follows_the_loop(redis_url: str, namespace: str) -> None:
    """The hot-key tracker publishes to Redis from each new loop and ticks in it again."""
    cache = build("memory+redis", redis_url, namespace)
    hot = HotKeys(k=8, url=redis_url, interval=3600).attach(cache)

    async def round_(key: str) -> list[str]:
        await cache.get_or_set(key, lambda: 1)
        assert hot._task is not None and not hot._task.done()  # ticking in this loop
        assert await hot.publish() >= 1
        return await hot.fleet_hot(cache.namespace)

    assert asyncio.run(round_("a")) == [cache.full_key("a")]
    assert set(asyncio.run(round_("b"))) == {cache.full_key("a"), cache.full_key("b")}
    asyncio.run(cache.close())


def test_started_in_one_loop_used_and_closed_in_another(redis_url: str, namespace: str) -> None:
    """``start()`` in one loop, use in the next, ``close()`` from a third: no error, no leak."""
    cache = build("memory+redis+bus", redis_url, namespace)

    async def start() -> None:
        await cache.start()
        await cache.set("k", "v")

    async def use() -> Any:
        return await cache.get("k"), await cache.get_or_set("j", lambda: "w")

    asyncio.run(start())
    assert asyncio.run(use()) == ("v", "w")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        asyncio.run(cache.close())
    assert cache.bus is not None and not cache.bus.running  # type: ignore[attr-defined]
    assert asyncio.run(use()) == ("v", "w")  # a closed cache starts again on use
    asyncio.run(cache.close())


def test_two_loops_alive_at_once_each_get_their_own_client(redis_url: str, namespace: str) -> None:
    """Alternating between two live loops never mixes their connections."""
    cache = build("redis", redis_url, namespace)
    one, two = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        for i in range(5):
            one.run_until_complete(cache.set(f"a{i}", i))
            assert two.run_until_complete(cache.get(f"a{i}")) == i
        assert len(cache.tiers.slots[0].tier.sides) == 2  # type: ignore[attr-defined]
        one.run_until_complete(cache.close())
    finally:
        one.close()
        two.close()


@pytest.mark.parametrize("stack", STACKS)
def test_sync_and_async_calls_interleaved_across_loops(
    stack: str, redis_url: str, namespace: str
) -> None:
    """Sync calls, then a loop, then sync calls, then another loop: every read is current."""
    app = build(stack, redis_url, namespace)
    other = build(stack, redis_url, namespace)

    async def read() -> Any:
        return await app.get("k")

    async def write(value: int) -> None:
        await app.set("k", value)

    app.sync.set("k", 1)
    assert asyncio.run(read()) == 1
    asyncio.run(write(2))
    assert app.sync.get("k") == 2
    other.sync.set("k", 3)
    if stack.endswith("bus"):
        wait_until(lambda: not l1_has(app, "k"), what="eviction")
    if not (stack.startswith("memory") and not stack.endswith("bus")):
        # (without a bus a memory copy is served until its TTL: nothing to check there)
        assert asyncio.run(read()) == 3 and app.sync.get("k") == 3
    other.sync.close()
    app.sync.close()


def test_sync_only_cache_hears_the_bus(redis_url: str, namespace: str) -> None:
    """A cache driven only from sync code gets other processes' invalidations."""
    app = build("memory+redis+bus", redis_url, namespace)
    other = build("memory+redis+bus", redis_url, namespace)
    app.sync.set("k", 1)
    assert app.sync.get("k") == 1 and l1_has(app, "k")
    other.sync.set("k", 2)
    wait_until(lambda: not l1_has(app, "k"), what="eviction")
    assert app.sync.get("k") == 2
    app.sync.close()
    other.sync.close()


# -- the bus not running: L1 is distrusted whatever the cause --------------------------------


def _bus(cache: sc.Cache) -> RedisBus:
    bus = cache.bus
    assert isinstance(bus, RedisBus)
    return bus


def _warm(cache: sc.Cache) -> Any:
    """Start ``cache`` in a loop that then closes; returns the L1 entry of ``k``."""

    async def write() -> None:
        await cache.set("k", "v1")

    async def read() -> None:
        assert await cache.get("k") == "v1"  # refills the memory tier

    asyncio.run(write())
    tracker = _bus(cache).tracker
    if tracker is not None:  # tracking reports our own write too: let it evict, then refill
        wait_until(lambda: tracker.received >= 1, what="our write reported")
    asyncio.run(read())
    entry = cache.tiers.top.peek(cache.full_key("k"))  # type: ignore[attr-defined]
    assert entry is not None and entry.alive and cache.tiers.local_trusted
    return entry


@pytest.mark.parametrize("tracking", [False, True])
def test_user_loop_closing_does_not_stop_the_bus(
    tracking: bool, redis_url: str, namespace: str, states: list[tuple[object, bool]]
) -> None:
    """The loop that started the cache closes; the bus keeps running and L1 stays trusted."""
    cache = build(
        "memory+redis+tracking-bus" if tracking else "memory+redis+bus", redis_url, namespace
    )
    entry = _warm(cache)
    assert _bus(cache).running and _bus(cache).connected
    assert entry.alive and cache.tiers.local_trusted
    assert [s for c, s in states if c is cache] == []
    cache.sync.close()


@pytest.mark.parametrize("tracking", [False, True])
def test_bus_loop_stopped_distrusts_l1_then_restarts(
    tracking: bool, redis_url: str, namespace: str, states: list[tuple[object, bool]]
) -> None:
    """The bus thread's loop stopped behind its back: L1 dropped and distrusted, then back."""
    cache = build(
        "memory+redis+tracking-bus" if tracking else "memory+redis+bus", redis_url, namespace
    )
    entry = _warm(cache)
    bus = _bus(cache)
    loop = bus._portal.loop
    loop.call_soon_threadsafe(loop.stop)
    wait_until(lambda: (cache, False) in states, what="loss reported")
    assert not entry.alive  # dropped when the loss was reported
    wait_until(lambda: states[-1:] == [(cache, True)], what="bus restarted")
    assert bus.running and bus.drops >= 1 and cache.tiers.local_trusted
    other = build("memory+redis+bus", redis_url, namespace)
    heard = bus.received
    other.sync.set("k", "v3")  # heard by the new reader thread
    wait_until(lambda: bus.received > heard, what="messages flow again")
    assert cache.sync.get("k") == "v3"
    other.sync.close()
    cache.sync.close()


def test_killed_pubsub_connection_while_no_loop_runs(
    redis_url: str, namespace: str, states: list[tuple[object, bool]]
) -> None:
    """CLIENT KILL TYPE pubsub between two ``asyncio.run``: L1 dropped, the bus reconnects."""
    cache = build("memory+redis+bus", redis_url, namespace)
    entry = _warm(cache)
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.client_kill_filter(_type="pubsub") >= 1
    finally:
        client.close()
    wait_until(
        lambda: [s for c, s in states if c is cache][-2:] == [False, True], what="loss, reconnect"
    )
    assert not entry.alive

    async def read() -> Any:
        return await cache.get("k")

    assert asyncio.run(read()) == "v1"
    cache.sync.close()


def test_a_bus_that_cannot_start_leaves_l1_distrusted(
    redis_url: str, namespace: str, redis_factory: Callable[..., Any]
) -> None:
    """No bus server (staleness_bound=0): every loop reads past L1 and gets the shared value."""
    server = redis_factory()
    server.stop()
    cache = sc.Cache(
        tiers=[sc.MemoryTier(maxsize=10), sc.RedisTier(url=redis_url)],
        namespace=namespace,
        bus=RedisBus(server.url, connect_timeout=0.2),
        staleness_bound=0,  # distrust-all while the bus is down (the bounded mode is tested apart)
    )

    async def go(value: int) -> Any:
        await cache.set("k", value)
        return await cache.get("k")

    for value in range(3):
        assert asyncio.run(go(value)) == value
        assert not cache.tiers.local_trusted and not l1_has(cache, "k")
    cache.sync.close()

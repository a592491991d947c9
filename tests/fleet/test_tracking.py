"""Server-assisted invalidation: Redis client-side tracking evicts L1 on any write to the namespace."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
from tests.waiting import poll

import stratacache as sc
from stratacache.engine import signals
from stratacache.fleet.bus import RedisBus
from stratacache.fleet.tracking_group import TrackingGroup


def make_cache(url: str, namespace: str, **bus_options: Any) -> sc.Cache:
    return sc.Cache(
        tiers=[sc.MemoryTier(maxsize=1000), sc.RedisTier(url=url)],
        namespace=namespace,
        bus=RedisBus(url, tracking=True, **bus_options),
    )


def tracker(cache: sc.Cache) -> TrackingGroup:
    bus: Any = cache.bus
    assert isinstance(bus.tracker, TrackingGroup)
    return bus.tracker


def l1_has(cache: sc.Cache, key: str) -> bool:
    top: Any = cache.tiers.top
    return top.peek(cache.full_key(key)) is not None


@pytest.fixture
def server(redis_factory: Callable[..., Any]) -> Any:
    """A redis-server of the test's own (tracking prefixes are per server)."""
    return redis_factory()


@pytest.fixture
async def pair(server: Any) -> AsyncIterator[tuple[sc.Cache, sc.Cache]]:
    """Two caches of one namespace with tracking on (two 'processes' by origin)."""
    namespace = "trk" + uuid.uuid4().hex[:8]
    one, two = make_cache(server.url, namespace), make_cache(server.url, namespace)
    async with one, two:
        assert tracker(one).supported and tracker(two).supported
        yield one, two


@pytest.fixture
def raw(server: Any) -> Any:
    """A plain redis client: a program that knows nothing of stratacache."""
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()


async def cached_everywhere(pair: tuple[sc.Cache, sc.Cache], key: str, value: Any) -> None:
    """Store ``key`` in Redis, let the resulting invalidations land, then fill both L1s."""
    one, two = pair
    before = [tracker(c).received for c in pair]
    # no bus of its own: its overwrite message could land after the L1s are filled below
    writer = sc.Cache(
        tiers=[sc.RedisTier(url=one.bus.url)],  # type: ignore[union-attr]
        namespace=one.namespace,
        bus=False,
    )
    async with writer:
        await writer.set(key, value)
    await poll(
        lambda: all(tracker(c).received > n for c, n in zip(pair, before, strict=True)),
        what="tracking message for the write",
    )
    assert await one.get(key) == value and await two.get(key) == value
    assert l1_has(one, key) and l1_has(two, key)


async def marker(pair: tuple[sc.Cache, sc.Cache], raw: Any) -> None:
    """Write a namespaced marker key and wait until both trackers saw it (messages are ordered)."""
    before = [tracker(c).received for c in pair]
    raw.set(f"{pair[0].namespace}:__marker__", b"x")
    await poll(
        lambda: all(tracker(c).received > n for c, n in zip(pair, before, strict=True)),
        what="marker invalidation",
    )


@pytest.mark.parametrize("command", ["set", "delete", "unlink"])
async def test_raw_write_evicts_l1_everywhere(
    pair: tuple[sc.Cache, sc.Cache], raw: Any, command: str
) -> None:
    """A SET / DEL / UNLINK of a namespaced key by another program evicts it from both L1s."""
    one, two = pair
    await cached_everywhere(pair, "k", "v")
    full = one.full_key("k")
    if command == "set":
        raw.set(full, b"not stratacache's")
    else:
        getattr(raw, command)(full)
    await poll(lambda: not l1_has(one, "k") and not l1_has(two, "k"), what="L1 eviction")


async def test_keys_outside_the_namespace_are_ignored(
    pair: tuple[sc.Cache, sc.Cache], raw: Any
) -> None:
    """Writes to keys outside ``{namespace}:`` leave L1 alone."""
    one, two = pair
    await cached_everywhere(pair, "k", "v")
    raw.set(f"other:{one.namespace}:k", b"x")
    raw.set(f"{one.namespace}x:k", b"x")
    raw.set("k", b"x")
    await marker(pair, raw)  # anything sent before the marker has arrived by now
    assert l1_has(one, "k") and l1_has(two, "k")
    assert await one.get("k") == "v"


async def test_killed_tracking_connection_distrusts_l1_then_recovers(
    pair: tuple[sc.Cache, sc.Cache], raw: Any
) -> None:
    """CLIENT KILL of the tracking connection: the bus reports down, L1 is dropped, then back."""
    one, two = pair
    states: list[bool] = []

    def on_state(sender: Any, connected: bool) -> None:
        if sender is two:
            states.append(connected)

    await cached_everywhere(pair, "k", "v")
    signals.bus_state.connect(on_state)
    try:
        client_id = tracker(two).tracking_client_id
        assert client_id is not None
        assert raw.client_kill_filter(_id=client_id) == 1
        await poll(lambda: states[-2:] == [False, True], what="loss then recovery")
    finally:
        signals.bus_state.disconnect(on_state)
    assert not l1_has(two, "k") and two.tiers.local_trusted
    assert tracker(two).drops == 1 and tracker(two).tracking_client_id not in (None, client_id)
    assert l1_has(one, "k")  # the other process was not affected
    assert await two.get("k") == "v" and l1_has(two, "k")
    raw.set(two.full_key("k"), b"changed")  # tracking works again
    await poll(
        lambda: not l1_has(two, "k") and not l1_has(one, "k"), what="eviction after recovery"
    )


async def test_flushall_drops_local_tiers(pair: tuple[sc.Cache, sc.Cache], raw: Any) -> None:
    """A server-side FLUSHALL (a nil tracking message) empties both L1s."""
    one, two = pair
    await cached_everywhere(pair, "k", "v")
    raw.flushall()
    await poll(lambda: not l1_has(one, "k") and not l1_has(two, "k"), what="L1 cleared")
    assert one.tiers.local_trusted and two.tiers.local_trusted


async def test_own_writes_still_read_back(pair: tuple[sc.Cache, sc.Cache]) -> None:
    """A cache's own set may be evicted from its L1 by the echoed tracking message, never lost."""
    one, two = pair
    await one.set("k", 1)
    assert await one.get("k") == 1 and await two.get("k") == 1
    await one.set("k", 2)
    await poll(lambda: not l1_has(two, "k"), what="overwrite reached the other cache")
    assert await two.get("k") == 2 and await one.get("k") == 2


async def test_server_without_tracking_keeps_plain_bus(
    redis_factory: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A server refusing CLIENT (as Redis < 6 refuses TRACKING) logs a warning; the bus still works."""
    server = redis_factory("--rename-command", "CLIENT", "")
    namespace = "notrk" + uuid.uuid4().hex[:8]
    one, two = make_cache(server.url, namespace), make_cache(server.url, namespace)
    async with one, two:
        assert not tracker(one).supported and one.tiers.local_trusted
        assert "tracking unavailable" in caplog.text
        await two.set("k", 1)
        assert l1_has(two, "k")
        await one.invalidate(keys=["k"])
        await poll(lambda: not l1_has(two, "k"), what="plain bus invalidation")

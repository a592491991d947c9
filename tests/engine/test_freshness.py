"""Freshness: TTLs, jitter, soft TTL, tier caps, XFetch, stale-while-revalidate, stale-if-error."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from tests.waiting import poll

import stratacache as sc
from stratacache.engine import signals
from stratacache.engine.policy import EntryPolicy, Freshness, classify


class Loader:
    """A loader that counts its calls, returns successive values, and may block or fail."""

    def __init__(
        self, gate: asyncio.Event | None = None, error: Exception | None = None, name: str = "v"
    ) -> None:
        self.calls = 0
        self.gate = gate
        self.error = error
        self.name = name

    async def __call__(self) -> str:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return f"{self.name}{self.calls}"


@pytest.fixture
def clock() -> sc.ManualClock:
    return sc.ManualClock()


@pytest.fixture
async def cache(redis_url: str, clock: sc.ManualClock) -> AsyncIterator[sc.Cache]:
    """Memory over Redis, driven by a manual clock, in a namespace private to the test."""
    c = sc.Cache(
        tiers=[sc.MemoryTier(maxsize=1000), sc.RedisTier(redis_url)],
        namespace="fr" + uuid.uuid4().hex[:8],
        default_ttl=60,
        clock=clock,
    )
    async with c:
        yield c


def l1(cache: sc.Cache, key: str) -> sc.Entry | None:
    top: Any = cache.tiers.top
    entry: sc.Entry | None = top.peek(cache.full_key(key))
    return entry


def loaded_event(cache: sc.Cache, count: int) -> Callable[[], bool]:
    """A predicate true once ``count`` loads have completed and their results are stored."""
    rt = cache.readthrough
    return lambda: cache.counters.loads >= count and rt.idle()


# -- TTLs ---------------------------------------------------------------------------------------
async def test_entry_is_reloaded_after_its_hard_ttl(cache: sc.Cache, clock: sc.ManualClock) -> None:
    """A value is served until its TTL and loaded again once it has passed."""
    load = Loader()
    assert await cache.get_or_set("k", load, ttl=10) == "v1"
    clock.advance(9.9)
    assert await cache.get_or_set("k", load, ttl=10) == "v1"
    clock.advance(0.2)
    assert await cache.get_or_set("k", load, ttl=10) == "v2"
    assert load.calls == 2


def test_jitter_stretches_ttls_within_bounds() -> None:
    """Jitter spreads expiries between ttl and ttl * (1 + jitter), never below ttl."""
    policy = EntryPolicy(ttl=100, refresh_after=50, jitter=0.5)
    entries = [policy.make("v", 0.0) for _ in range(200)]
    expiries = {e.expires for e in entries}
    assert all(e.expires is not None and 100 <= e.expires <= 150 for e in entries)
    assert all(e.refresh_after is not None and 50 <= e.refresh_after <= 75 for e in entries)
    assert len(expiries) > 100


def test_soft_ttl_may_not_exceed_hard_ttl() -> None:
    """refresh_after beyond ttl is a configuration error."""
    with pytest.raises(sc.ConfigError):
        EntryPolicy(ttl=10, refresh_after=20)


async def test_tier_ttl_cap_bounds_the_local_copy_only(
    redis_url: str, clock: sc.ManualClock
) -> None:
    """A memory tier with ttl=5 drops its copy after 5 s while Redis keeps serving the entry."""
    load = Loader()
    tiers = [sc.MemoryTier(ttl=5), sc.RedisTier(redis_url)]
    async with sc.Cache(tiers=tiers, namespace="cap" + uuid.uuid4().hex[:6], clock=clock) as c:
        await c.get_or_set("k", load, ttl=60)
        entry = l1(c, "k")
        assert entry is not None and entry.expires == pytest.approx(clock.time() + 5)
        clock.advance(6)
        assert await c.get_or_set("k", load, ttl=60) == "v1"
        assert load.calls == 1
        assert c.stats()["tiers"]["redis"]["hits"] == 1


# -- XFetch -------------------------------------------------------------------------------------
def test_classify_draws_early_refresh_more_often_near_expiry() -> None:
    """With the same draw, XFetch says EARLY near the soft TTL and FRESH far from it."""
    entry = sc.Entry("v", created=0.0, expires=100.0, cost=1.0)
    draw = 0.1  # -ln(0.1) = 2.3: recompute within 2.3 * cost of expiry
    assert classify(entry, 97.0, beta=1.0, rand=draw) is Freshness.FRESH
    assert classify(entry, 98.0, beta=1.0, rand=draw) is Freshness.EARLY
    assert classify(entry, 98.0, beta=0.0, rand=draw) is Freshness.FRESH
    assert classify(entry, 96.0, beta=2.0, rand=draw) is Freshness.EARLY


async def test_loader_duration_is_stored_in_the_entry(cache: sc.Cache) -> None:
    """The measured loader duration is kept with the entry (XFetch's delta)."""

    def slow() -> str:
        end = time.perf_counter() + 0.002
        while time.perf_counter() < end:
            pass
        return "v"

    await cache.get_or_set("k", slow)
    entry = await cache.get_entry("k")
    assert entry is not None and entry.cost >= 0.002


async def _plant(cache: sc.Cache, key: str, clock: sc.ManualClock, cost: float) -> None:
    """Store an entry expiring in 10 s whose loader took ``cost`` seconds."""
    entry = sc.Entry("old", created=clock.time(), expires=clock.time() + 10, cost=cost)
    await cache.tiers.write(cache.full_key(key), entry, None, clock.time())


async def test_xfetch_refreshes_early_in_the_background(
    cache: sc.Cache, clock: sc.ManualClock
) -> None:
    """Near expiry a reader gets the current value and one early recompute runs behind it."""
    early: list[str] = []
    cache.readthrough.random = lambda: 0.01  # -ln = 4.6: early within 4.6 * cost
    await _plant(cache, "k", clock, cost=1.0)
    clock.advance(6)  # 4 s left < 4.6
    load = Loader()
    with signals.early_refresh.connected_to(lambda _s, key: early.append(key)):
        assert await cache.get_or_set("k", load) == "old"
        await poll(loaded_event(cache, 1), what="early refresh")
    assert load.calls == 1 and early == [cache.full_key("k")]
    assert cache.counters.early_refreshes == 1
    assert await cache.get_or_set("k", load) == "v1"


async def test_xfetch_does_not_fire_far_from_expiry(cache: sc.Cache, clock: sc.ManualClock) -> None:
    """Far from expiry the same draw serves the value without recomputing."""
    cache.readthrough.random = lambda: 0.01
    await _plant(cache, "k", clock, cost=1.0)
    clock.advance(1)  # 9 s left > 4.6
    load = Loader()
    assert await cache.get_or_set("k", load) == "old"
    assert load.calls == 0 and cache.counters.early_refreshes == 0


async def test_xfetch_off_switch(redis_url: str, clock: sc.ManualClock) -> None:
    """early_refresh_beta=0 never refreshes early, whatever the draw."""
    tiers = [sc.MemoryTier(), sc.RedisTier(redis_url)]
    namespace = "off" + uuid.uuid4().hex[:6]
    async with sc.Cache(tiers=tiers, namespace=namespace, clock=clock, early_refresh_beta=0) as c:
        c.readthrough.random = lambda: 1e-12
        await _plant(c, "k", clock, cost=1.0)
        clock.advance(9.5)
        load = Loader()
        assert await c.get_or_set("k", load) == "old"
        assert load.calls == 0 and c.counters.early_refreshes == 0


# -- stale-while-revalidate ---------------------------------------------------------------------
async def test_stale_while_revalidate_serves_at_once_then_new(
    cache: sc.Cache, clock: sc.ManualClock
) -> None:
    """Past the soft TTL the stale value is returned while the loader is still blocked."""
    first = Loader()
    await cache.get_or_set("k", first, ttl=60, refresh_after=10)
    clock.advance(11)
    gate = asyncio.Event()
    load = Loader(gate, name="new")
    assert await cache.get_or_set("k", load, ttl=60, refresh_after=10) == "v1"
    await poll(lambda: load.calls == 1, what="the refresh to start")
    assert cache.counters.loads == 1  # the refresh is still blocked: the caller did not wait
    gate.set()
    await poll(loaded_event(cache, 2), what="background refresh")
    assert await cache.get_or_set("k", load, ttl=60, refresh_after=10) == "new1"
    assert cache.counters.stale_served == 1


async def test_one_background_refresh_per_key(cache: sc.Cache, clock: sc.ManualClock) -> None:
    """Many concurrent stale reads start a single refresh of the key."""
    await cache.get_or_set("k", Loader(), ttl=60, refresh_after=10)
    clock.advance(11)
    gate = asyncio.Event()
    load = Loader(gate)
    values = await asyncio.gather(
        *(cache.get_or_set("k", load, ttl=60, refresh_after=10) for _ in range(50))
    )
    assert set(values) == {"v1"}
    await poll(lambda: load.calls == 1, what="the refresh to start")
    gate.set()
    await poll(loaded_event(cache, 2), what="background refresh")
    assert load.calls == 1 and cache.counters.background_refreshes == 1


# -- stale-if-error -----------------------------------------------------------------------------
async def test_stale_if_error_serves_stale_within_grace(
    cache: sc.Cache, clock: sc.ManualClock
) -> None:
    """Past the hard TTL but inside stale_ttl, a failing loader yields the old value."""
    served: list[str] = []
    await cache.get_or_set("k", Loader(), ttl=10, stale_ttl=30)
    clock.advance(15)
    failing = Loader(error=RuntimeError("db down"))
    with signals.stale_served.connected_to(lambda _s, key, reason: served.append(reason)):
        assert await cache.get_or_set("k", failing, ttl=10, stale_ttl=30) == "v1"
    assert served == ["error"]
    assert cache.counters.stale_if_error == 1 and cache.counters.load_errors == 1


async def test_stale_if_error_reraises_the_loaders_own_exception(
    cache: sc.Cache, clock: sc.ManualClock
) -> None:
    """Past the grace window the loader's exception object itself reaches the caller."""
    await cache.get_or_set("k", Loader(), ttl=10, stale_ttl=30)
    clock.advance(41)
    error = RuntimeError("db down")
    with pytest.raises(RuntimeError) as raised:
        await cache.get_or_set("k", Loader(error=error), ttl=10, stale_ttl=30)
    assert raised.value is error


async def test_loader_error_without_any_stale_value_is_raised(cache: sc.Cache) -> None:
    """A cold key whose loader fails raises the loader's exception unchanged."""
    error = KeyError("nope")
    with pytest.raises(KeyError) as raised:
        await cache.get_or_set("cold", Loader(error=error))
    assert raised.value is error


# -- single-flight ------------------------------------------------------------------------------
async def test_200_concurrent_callers_of_a_cold_key_run_the_loader_once(cache: sc.Cache) -> None:
    """Single-flight: 200 concurrent misses on one key in one process make one loader call."""
    gate = asyncio.Event()
    load = Loader(gate)
    callers = [asyncio.ensure_future(cache.get_or_set("cold", load)) for _ in range(200)]
    await poll(lambda: load.calls == 1 and cache.counters.coalesced == 199, what="all waiting")
    gate.set()
    assert set(await asyncio.gather(*callers)) == {"v1"}
    assert load.calls == 1


async def test_decorated_function_is_single_flight(cache: sc.Cache) -> None:
    """200 concurrent calls of a cached coroutine with the same argument run it once."""
    gate = asyncio.Event()
    calls = 0

    @cache.cached(ttl=60)
    async def fn(x: int) -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return x * 2

    callers = [asyncio.ensure_future(fn(21)) for _ in range(200)]
    await poll(lambda: calls == 1 and cache.counters.coalesced == 199, what="all waiting")
    gate.set()
    assert set(await asyncio.gather(*callers)) == {42} and calls == 1


# -- scheduled refresh --------------------------------------------------------------------------
async def test_refresh_hot_recomputes_entries_read_since_their_last_load(cache: sc.Cache) -> None:
    """refresh_hot() reloads every entry read since it was loaded, and only those."""
    version = 0

    @cache.cached(ttl=60, refresh_every=3600)
    async def fn(x: int) -> str:
        return f"{x}@{version}"

    assert [await fn(1), await fn(2)] == ["1@0", "2@0"]
    version = 1
    assert await fn.refresh_hot() == 2  # type: ignore[attr-defined]
    assert await fn(1) == "1@1"  # read again: hot for the next round
    version = 2
    assert await fn.refresh_hot() == 1  # type: ignore[attr-defined]
    assert [await fn(1), await fn(2)] == ["1@2", "2@1"]
    assert fn.stats.scheduled_refreshes == 3  # type: ignore[attr-defined]


async def test_refresh_every_runs_in_the_background(cache: sc.Cache) -> None:
    """With refresh_every, hot entries are recomputed without any caller asking."""
    calls = 0

    @cache.cached(ttl=60, refresh_every=0.01)
    async def fn() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert await fn() == 1
    await poll(lambda: cache.counters.scheduled_refreshes >= 1, what="a scheduled refresh")
    assert calls >= 2


def test_refresh_every_must_be_positive(cache: sc.Cache) -> None:
    """A zero or negative refresh interval is a configuration error."""
    with pytest.raises(sc.ConfigError):
        cache.cached(refresh_every=0)

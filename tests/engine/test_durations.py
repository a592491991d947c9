"""Durations at every door of the engine: refused at the call, never a tier failure.

Every call that takes a duration, sync and async, on memory-only, memory+Redis,
memory+SQLite and memory+PostgreSQL caches, with every kind of bad value: the
call raises ``ConfigError`` naming the parameter, nothing is written anywhere,
no loader runs, and no tier counts an error or opens its breaker.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import stratacache as sc
from stratacache.core.durations import MAX_SECONDS, MIN_SECONDS

#: not a duration anywhere (``None`` is added where the parameter gives it no meaning)
BAD: list[Any] = [
    math.inf,
    -math.inf,
    math.nan,
    1e18,
    2**64,
    MAX_SECONDS + 1,
    True,
    False,
    "5",
    0,
    -1,
    -0.5,
    1e-9,
    0.0004,
]
#: the durations of one call (None is documented for each: no expiry / no soft TTL / off)
PER_CALL = ["ttl", "refresh_after", "stale_ttl"]


def _values(param: str) -> list[Any]:
    """The bad values of a TTL: 0 means "off" for stale_ttl, None is documented for all."""
    return [v for v in BAD if not (param == "stale_ttl" and v == 0 and v is not False)]


@pytest.fixture(params=["memory", "redis", "sqlite", "postgres"])
def tiers(request: pytest.FixtureRequest) -> Callable[[], list[Any]]:
    """A factory of a tier stack: memory alone, or memory over Redis / SQLite / PostgreSQL."""
    kind = request.param
    if kind == "memory":
        return lambda: [sc.MemoryTier()]
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        return lambda: [sc.MemoryTier(), sc.RedisTier(url=url)]
    url = request.getfixturevalue("sqlite_url" if kind == "sqlite" else "postgres_url")
    return lambda: [sc.MemoryTier(), sc.SQLTier(url=url, sweep_interval=0)]


@pytest.fixture
async def cache(tiers: Callable[[], list[Any]]) -> AsyncIterator[sc.Cache]:
    c = sc.Cache(tiers=tiers(), namespace="d" + uuid.uuid4().hex[:10], default_ttl=60)
    async with c:
        yield c


def _untouched(cache: sc.Cache) -> None:
    """No tier counted an error, wrote anything or opened its breaker."""
    for slot in cache.tiers.slots:
        assert slot.stats.errors == 0, slot.name
        assert slot.stats.sets == 0, slot.name
        assert not slot.breaker.is_open, slot.name


def _loader(calls: list[int]) -> Callable[[], int]:
    def load() -> int:
        calls.append(1)
        return 1

    return load


async def _async_calls(cache: sc.Cache, param: str, value: Any, calls: list[int]) -> None:
    kw = {param: value}
    with pytest.raises(sc.ConfigError, match=rf"^{param} must"):
        await cache.set("k", 1, **kw)
    with pytest.raises(sc.ConfigError, match=rf"^{param} must"):
        await cache.get_or_set("k", _loader(calls), **kw)
    if param == "ttl":
        with pytest.raises(sc.ConfigError, match=r"^ttl must"):
            await cache.set_many({"k": 1, "j": 2}, ttl=value)
    with pytest.raises(sc.ConfigError, match=rf"^{param} must"):
        cache.cached(**kw)(_loader(calls))


def _sync_calls(cache: sc.Cache, param: str, value: Any, calls: list[int]) -> None:
    kw = {param: value}
    with pytest.raises(sc.ConfigError, match=rf"^{param} must"):
        cache.sync.set("k", 1, **kw)
    with pytest.raises(sc.ConfigError, match=rf"^{param} must"):
        cache.sync.get_or_set("k", _loader(calls), **kw)
    if param == "ttl":
        with pytest.raises(sc.ConfigError, match=r"^ttl must"):
            cache.sync.set_many({"k": 1, "j": 2}, ttl=value)


@pytest.mark.parametrize("param", PER_CALL)
async def test_async_calls_refuse_bad_durations(cache: sc.Cache, param: str) -> None:
    """set, get_or_set, set_many and @cached refuse every bad value; nothing reaches a tier."""
    calls: list[int] = []
    for value in _values(param):
        await _async_calls(cache, param, value, calls)
    assert calls == [] and await cache.get("k") is None and await cache.get("j") is None
    _untouched(cache)


@pytest.mark.parametrize("param", PER_CALL)
async def test_sync_calls_refuse_bad_durations(cache: sc.Cache, param: str) -> None:
    """cache.sync refuses the same values with the same error as the async client."""
    calls: list[int] = []
    for value in _values(param):
        _sync_calls(cache, param, value, calls)
    assert calls == [] and cache.sync.get("k") is None and cache.sync.get("j") is None
    _untouched(cache)


@pytest.mark.parametrize(
    ("param", "values"),
    [
        ("default_ttl", _values("ttl")),
        ("refresh_after", _values("refresh_after")),
        ("stale_ttl", _values("stale_ttl")),
        ("breaker_reset", [*BAD, None]),
        ("jitter", [math.inf, -math.inf, math.nan, 1.5, 2, -0.1, 2**64, True, False, "0.1", None]),
    ],
    ids=lambda p: p if isinstance(p, str) else "",
)
def test_cache_constructor_refuses_bad_durations(param: str, values: list[Any]) -> None:
    """Cache(...) refuses a bad default duration, naming the parameter."""
    for value in values:
        with pytest.raises(sc.ConfigError, match=rf"^{param} must"):
            sc.Cache(tiers=[sc.MemoryTier()], **{param: value})


async def test_none_stale_ttl_means_off(cache: sc.Cache) -> None:
    """stale_ttl=None is documented as "off": the same entry as stale_ttl=0."""
    await cache.set("a", 1, ttl=30, stale_ttl=None)
    await cache.set("b", 1, ttl=30, stale_ttl=0)
    for key in ("a", "b"):
        entry = cache.sync.get_entry(key)
        assert entry is not None and entry.stale_until == entry.expires


def test_stale_ttl_none_as_cache_default() -> None:
    """Cache(stale_ttl=None) is the same policy as stale_ttl=0."""
    assert sc.Cache(tiers=[sc.MemoryTier()], stale_ttl=None).policy.stale_ttl == 0.0


@pytest.mark.parametrize("call", ["async", "sync"])
async def test_longest_durations_are_stored_by_every_tier(
    tiers: Callable[[], list[Any]], call: str
) -> None:
    """ttl, refresh_after and stale_ttl at the maximum, jitter 1: every tier keeps the value."""
    namespace = "d" + uuid.uuid4().hex[:10]
    writer = sc.Cache(tiers=tiers(), namespace=namespace, jitter=1.0)
    reader = sc.Cache(tiers=tiers()[1:] or tiers(), namespace=namespace)
    kw = {"ttl": MAX_SECONDS, "refresh_after": MAX_SECONDS, "stale_ttl": MAX_SECONDS}
    async with writer, reader:
        if call == "async":
            await writer.set("k", "v", **kw)
            await writer.set_many({"m": "w"}, ttl=MAX_SECONDS)
        else:
            writer.sync.set("k", "v", **kw)
            writer.sync.set_many({"m": "w"}, ttl=MAX_SECONDS)
        shared = len(writer.tiers.slots) > 1
        assert await writer.get("k") == "v" and await writer.get("m") == "w"
        if shared:  # another process's cache reads the shared tier
            assert await reader.get("k") == "v" and await reader.get("m") == "w"
        for slot in writer.tiers.slots:
            assert slot.stats.errors == 0 and not slot.breaker.is_open, slot.name


async def test_redis_keeps_the_longest_entry_with_a_real_expiry(redis_url: str) -> None:
    """The physical PX of the longest accepted entry is positive and within 3 * 2**31 s."""
    namespace = "d" + uuid.uuid4().hex[:10]
    cache = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace=namespace, jitter=1.0)
    async with cache:
        await cache.set("k", "v", ttl=MAX_SECONDS, stale_ttl=MAX_SECONDS)
    client = redis.Redis.from_url(redis_url)
    try:
        (name,) = [k for k in client.scan_iter() if k.endswith(b":k") and b"__" not in k]
        pttl = int(client.pttl(name))  # type: ignore[arg-type]
    finally:
        client.close()
    assert 2 * MAX_SECONDS * 1000 - 60_000 < pttl <= 3 * MAX_SECONDS * 1000


async def test_bad_durations_never_trip_the_redis_breaker(redis_url: str) -> None:
    """Many bad durations in a row: no Redis error is counted and its breaker stays closed."""
    namespace = "d" + uuid.uuid4().hex[:10]
    writer = sc.Cache(
        tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)],
        namespace=namespace,
        breaker_threshold=1,
    )
    reader = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace=namespace)
    refused = 0
    async with writer, reader:
        for param in PER_CALL:
            for value in _values(param) * 5:
                for attempt in _attempts(writer, param, value):
                    with pytest.raises(sc.ConfigError):
                        await attempt()
                    refused += 1
        await reader.set("plain", "ok")
        assert await writer.get("plain") == "ok"  # still read from Redis
        redis_stats = writer.stats()["tiers"]["redis"]
    assert refused > 300 and redis_stats["errors"] == 0
    assert not writer.tiers.slots[1].breaker.is_open


def _attempts(cache: sc.Cache, param: str, value: Any) -> list[Callable[[], Awaitable[Any]]]:
    kw = {param: value}

    async def sync_set() -> None:
        cache.sync.set("x", 1, **kw)

    return [
        lambda: cache.set("x", 1, **kw),
        lambda: cache.get_or_set("x", lambda: 1, **kw),
        sync_set,
    ]


async def test_the_shortest_lock_lease_is_a_valid_redis_px(redis_url: str) -> None:
    """RedisLock(lease=MIN_SECONDS) takes the lock: its PX is 1 ms, never 0."""
    lock = sc.RedisLock(redis_url, lease=MIN_SECONDS, wait_timeout=MIN_SECONDS)
    try:
        attempt = await lock.acquire("k")
        assert attempt.owned
    finally:
        await lock.close()


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ttl=st.one_of(
        st.floats(min_value=1, max_value=MAX_SECONDS),
        st.integers(min_value=1, max_value=MAX_SECONDS),
    ),
    stale=st.one_of(st.none(), st.just(0), st.floats(min_value=MIN_SECONDS, max_value=MAX_SECONDS)),
)
def test_every_accepted_ttl_reaches_redis(redis_url: str, ttl: float, stale: float | None) -> None:
    """Any ttl/stale_ttl the engine accepts is stored in Redis and read by another cache."""
    namespace = "d" + uuid.uuid4().hex[:10]
    writer = sc.Cache(
        tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)], namespace=namespace, jitter=1.0
    )
    reader = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace=namespace)
    try:
        writer.sync.set("k", "v", ttl=ttl, stale_ttl=stale)
        assert reader.sync.get("k") == "v"
        assert writer.stats()["tiers"]["redis"]["errors"] == 0
    finally:
        writer.sync.close()
        reader.sync.close()

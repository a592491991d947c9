"""The fleet lock consults the circuit breaker of the Redis tier it shares a server with.

While that tier's circuit is open (Redis hung or down), a ``lock=True`` miss loads at once
with in-process single-flight only (``lock_fallback`` reason ``"circuit_open"``): the lock
is not asked, so no call waits on the hung server, sync or async, in a long-lived event
loop or in a new one per call (which would otherwise connect the lock afresh each time).
What such a load stores stays out of Redis, as for any load whose Redis read failed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import pytest

import stratacache as sc
from stratacache import RedisLock
from stratacache.engine import signals
from stratacache.fleet.connection import RedisConnection

from ..outage import LockSpy, breaker_cache, hang, resume
from ..waiting import wait_until


@pytest.fixture
def server(pausable_redis: Any) -> Any:
    return pausable_redis


def _cache(url: str) -> sc.Cache:
    return breaker_cache(url, "lb")


def _open_breaker(cache: sc.Cache, server: Any) -> None:
    hang(server)
    assert cache.sync.get("anything") is None  # times out: the circuit opens
    assert cache.stats()["tiers"]["redis"]["circuit_open"]


def _runner(cache: sc.Cache, driver: str, calls: list[int]) -> tuple[Callable[[int], int], Any]:
    """A ``lock=True`` decorated function run as ``driver`` says, and a closer."""
    if driver == "sync":

        @cache.cached(ttl=60, lock=True)
        def plain(x: int) -> int:
            calls.append(x)
            return x

        return plain, cache.sync.close

    @cache.cached(ttl=60, lock=True)
    async def coro(x: int) -> int:
        calls.append(x)
        return x

    if driver == "async_new_loop":  # asyncio.run per call: CLI, Celery, per-test loops
        return (lambda x: asyncio.run(coro(x))), lambda: asyncio.run(cache.close())
    loop = asyncio.new_event_loop()

    def close() -> None:
        loop.run_until_complete(cache.close())
        loop.close()

    return (lambda x: loop.run_until_complete(coro(x))), close


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["sync", "async", "async_new_loop"])
def test_lock_true_miss_skips_the_lock_while_its_redis_breaker_is_open(
    server: Any, driver: str
) -> None:
    cache = _cache(server.url)
    calls: list[int] = []
    run, close = _runner(cache, driver, calls)
    reasons: list[str] = []

    def on_fallback(_sender: Any, key: str, reason: str) -> None:
        reasons.append(reason)

    try:
        assert run(0) == 0  # Redis answers: the lock is taken as usual
        spy = LockSpy(cache.lock)
        assert run(1) == 1
        assert "acquire" in spy.calls or "acquire_sync" in spy.calls
        _open_breaker(cache, server)
        spy.calls.clear()
        fallbacks = cache.counters.lock_fallbacks
        errors = cache.stats()["tiers"]["redis"]["errors"]
        with signals.lock_fallback.connected_to(on_fallback):
            assert [run(x) for x in (2, 3, 4)] == [2, 3, 4]
            assert run(2) == 2  # loaded once: served from memory now
        assert calls == [0, 1, 2, 3, 4]
        assert spy.calls == []  # neither taken nor connected (a new loop's start included)
        assert reasons == ["circuit_open"] * 3
        assert cache.counters.lock_fallbacks == fallbacks + 3
        assert cache.counters.lock_errors == 0  # skipped, not failed
        assert cache.stats()["tiers"]["redis"]["errors"] == errors  # no call waited on Redis

        resume(server)
        wait_until(
            lambda: not cache.stats()["tiers"]["redis"]["circuit_open"],
            what="the probe to close the circuit",
        )
        assert run(5) == 5
        assert "acquire" in spy.calls or "acquire_sync" in spy.calls  # used again once back
    finally:
        resume(server)
        close()


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_load_without_the_lock_stays_out_of_redis(server: Any, driver: str) -> None:
    """No fleet lock taken: the value goes to this process's memory only, so another process
    never reads it from Redis once it is back (and cannot mix it with its own load)."""
    cache = _cache(server.url)
    other = sc.Cache(tiers=[sc.RedisTier(url=server.url)], namespace=cache.namespace, bus=False)
    try:
        with cache.sync:
            _open_breaker(cache, server)
            if driver == "sync":
                value = cache.sync.get_or_set("k", lambda: "outage", lock=True)
            else:
                value = asyncio.run(cache.get_or_set("k", lambda: "outage", lock=True))
            assert value == "outage"
            assert cache.counters.lock_fallbacks == 1
            resume(server)
            wait_until(
                lambda: not cache.stats()["tiers"]["redis"]["circuit_open"],
                what="the probe to close the circuit",
            )
        with other.sync:
            assert other.sync.get("k") is None
    finally:
        resume(server)


def test_the_lock_is_paired_with_the_tier_on_its_server(redis_url: str) -> None:
    """The default lock, a lock on the tier's connection or on the same server share its
    breaker; a lock on another server (or one the tier cannot tell) does not."""
    tier = sc.RedisTier(url=redis_url)
    cache = sc.Cache(tiers=[sc.MemoryTier(), tier], namespace="lp" + uuid.uuid4().hex[:6])
    host_port = redis_url.rsplit("/", 1)[0]
    assert tier.shares_server(cache.lock)
    assert tier.shares_server(RedisLock(connection=tier.connection))
    assert tier.shares_server(RedisLock(host_port + "/7"))  # another database, same server
    assert not tier.shares_server(RedisLock("redis://127.0.0.1:1/0"))
    assert not tier.shares_server(object())
    assert cache.lock_usable(cache.lock)  # closed circuit: the lock is asked


def test_connections_name_the_same_server_or_not() -> None:
    single = RedisConnection("redis://127.0.0.1:6379/0")
    assert single.same_server(RedisConnection("redis://127.0.0.1:6379/3"))
    assert not single.same_server(RedisConnection("redis://127.0.0.1:6380/0"))
    cluster = RedisConnection("redis://127.0.0.1:7000/0", startup_nodes=["127.0.0.1:7001"])
    assert cluster.same_server(RedisConnection("redis://127.0.0.1:7001/0", cluster=True))
    assert not cluster.same_server(RedisConnection("redis://127.0.0.1:7001/0"))
    sentinel = RedisConnection(sentinels=[("127.0.0.1", 26379)], service_name="a")
    assert sentinel.same_server(
        RedisConnection(sentinels=[("127.0.0.1", 26379), ("127.0.0.1", 26380)], service_name="a")
    )
    assert not sentinel.same_server(
        RedisConnection(sentinels=[("127.0.0.1", 26379)], service_name="b")
    )
    assert not sentinel.same_server(single)


@pytest.mark.slow
def test_a_lock_starting_against_a_hung_redis_stops_asking_it(server: Any) -> None:
    """The first script load gets no answer: the others are loaded on first use and the
    subscription is not waited for (it keeps trying in the background), async and sync."""
    import redis
    import redis.asyncio as aredis

    hang(server)
    loads: list[str] = []

    def counting(method: Any, is_async: bool) -> Any:
        async def acall(src: str) -> Any:
            loads.append("async")
            return await method(src)

        def call(src: str) -> Any:
            loads.append("sync")
            return method(src)

        return acall if is_async else call

    async def main() -> None:
        client = aredis.Redis.from_url(server.url, socket_timeout=0.2)
        client.script_load = counting(client.script_load, True)  # type: ignore[method-assign]
        lock = RedisLock(client=client)
        try:
            await lock.start()
            assert not lock.subscribed
        finally:
            await lock.close()
            await client.aclose()

    try:
        asyncio.run(main())
        sync_client = redis.Redis.from_url(server.url, socket_timeout=0.2)
        sync_client.script_load = counting(sync_client.script_load, False)  # type: ignore[method-assign]
        lock = RedisLock(server.url, sync_client=sync_client)
        try:
            lock.start_sync()
            assert not lock.subscribed_sync
        finally:
            lock.close_sync()
            sync_client.close()
        assert loads == ["async", "sync"]
    finally:
        resume(server)


@pytest.mark.slow
@pytest.mark.parametrize("driver", ["async", "sync"])
def test_an_acquire_lost_in_a_hang_is_released_once_redis_answers(server: Any, driver: str) -> None:
    """An acquire that timed out may still run when Redis resumes (it had the command):
    its lock, held by nobody, must not make other processes' misses wait out the lease."""
    import redis
    from tests.waiting import poll

    raw = redis.Redis.from_url(server.url)
    lock = RedisLock(connection=RedisConnection(server.url, socket_timeout=0.2), lease=60)
    key = lock.lock_key("k")
    gone = lambda: raw.get(key) is None  # noqa: E731
    try:
        if driver == "async":

            async def main() -> None:
                await lock.start()
                hang(server)
                with pytest.raises(Exception, match="Timeout"):
                    await lock.acquire("k")
                resume(server)
                await poll(gone, what="the orphaned lock to be released")
                await lock.close()

            asyncio.run(main())
        else:
            lock.start_sync()
            hang(server)
            with pytest.raises(Exception, match="Timeout"):
                lock.acquire_sync("k")
            resume(server)
            wait_until(gone, what="the orphaned lock to be released")
            lock.close_sync()
    finally:
        resume(server)
        raw.close()

"""A value comes back from every tier with the type and equality it was stored with, or is
refused at set: memory, Redis, SQLite and PostgreSQL tiers, async and sync, direct and decorated."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from tests.core.value_kinds import REFUSED, ZONED, Box, Color, Level, Model, Point, same, values

import stratacache as sc
from stratacache.core.tier import Tier

Lower = Callable[[], list[Tier]]

_settings = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

SAMPLES: list[Any] = [
    Point(1, 2),
    Level.HIGH,
    Color.RED | Color.GREEN,
    bytearray(b"abc"),
    ZONED,
    Box("b", {Point(1, 2): [Level.LOW, bytearray(b"x")]}),
    Model(name="m", payload=(1, 2.5), when=ZONED),
]


@pytest.fixture(params=["memory", "redis", "sqlite", "postgres"])
def lower(request: pytest.FixtureRequest) -> Lower:
    """Builds the tiers below memory (none for a memory-only cache); fresh objects per call."""
    kind = request.param
    if kind == "memory":
        return list
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
        return lambda: [sc.RedisTier(url=url)]
    url = request.getfixturevalue("sqlite_url" if kind == "sqlite" else "postgres_url")
    return lambda: [sc.SQLTier(url=url, sweep_interval=0)]


def _caches(lower: Lower) -> tuple[sc.Cache, sc.Cache | None]:
    """A writer (memory above the lower tiers) and a reader that only sees the lower tiers."""
    writer = sc.Cache(tiers=[sc.MemoryTier(), *lower()], namespace="vf", default_ttl=60)
    below = lower()
    reader = sc.Cache(tiers=below, namespace="vf", default_ttl=60) if below else None
    return writer, reader


async def _round_trip_async(lower: Lower, value: Any) -> None:
    key, batch = uuid.uuid4().hex, uuid.uuid4().hex
    writer, reader = _caches(lower)
    async with writer:
        await writer.set(key, value)
        await writer.set_many({batch: value})
        assert same(await writer.get(key), value)
        assert same(await writer.get_many([batch]), {batch: value})
        if reader is not None:
            async with reader:
                assert same(await reader.get(key), value)
                assert same(await reader.get_many([batch]), {batch: value})


def _round_trip_sync(lower: Lower, value: Any) -> None:
    key, batch = uuid.uuid4().hex, uuid.uuid4().hex
    writer, reader = _caches(lower)
    with writer.sync as sync:
        sync.set(key, value)
        sync.set_many({batch: value})
        assert same(sync.get(key), value)
        assert same(sync.get_many([batch]), {batch: value})
        if reader is not None:
            with reader.sync as other:
                assert same(other.get(key), value)
                assert same(other.get_many([batch]), {batch: value})


@_settings
@given(value=values)
async def test_async_every_tier_returns_the_type_that_went_in(lower: Lower, value: Any) -> None:
    """async set/get/set_many/get_many: memory and the shared tier give back the same type."""
    await _round_trip_async(lower, value)


@_settings
@given(value=values)
def test_sync_every_tier_returns_the_type_that_went_in(lower: Lower, value: Any) -> None:
    """cache.sync set/get/set_many/get_many: memory and the shared tier give back the same type."""
    _round_trip_sync(lower, value)


@pytest.mark.parametrize(("label", "make", "named"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_async_set_refuses_what_a_tier_would_change(
    lower: Lower, label: str, make: Callable[[], Any], named: str
) -> None:
    """async set raises SerializationError naming the type and writes nothing, memory included."""
    writer, reader = _caches(lower)
    async with writer:
        with pytest.raises(sc.SerializationError, match=named):
            await writer.set("k", make())
        assert await writer.get("k") is None
        if reader is not None:
            async with reader:
                assert await reader.get("k") is None
        assert all(t["errors"] == 0 for t in writer.stats()["tiers"].values())


@pytest.mark.parametrize(("label", "make", "named"), REFUSED[:6], ids=[r[0] for r in REFUSED[:6]])
def test_sync_set_refuses_what_a_tier_would_change(
    lower: Lower, label: str, make: Callable[[], Any], named: str
) -> None:
    """cache.sync.set raises SerializationError naming the type and writes nothing."""
    writer, _ = _caches(lower)
    with writer.sync as sync:
        with pytest.raises(sc.SerializationError, match=named):
            sync.set("k", make())
        assert sync.get("k") is None


@pytest.mark.parametrize("value", SAMPLES, ids=lambda v: type(v).__name__)
async def test_async_decorated_call_gives_one_type_from_loader_memory_and_shared_tier(
    lower: Lower, value: Any
) -> None:
    """The loader's object, the memory hit and another process's shared-tier hit agree exactly."""
    writer, reader = _caches(lower)
    name = uuid.uuid4().hex

    @writer.cached(ttl=60, key="v:{name}")
    async def load(name: str) -> Any:
        return value

    async with writer:
        assert same(await load(name), value)
        assert same(await load(name), value)
    if reader is not None:

        @reader.cached(ttl=60, key="v:{name}")
        async def elsewhere(name: str) -> Any:
            raise AssertionError("the shared tier should have answered")

        async with reader:
            assert same(await elsewhere(name), value)


@pytest.mark.parametrize("value", SAMPLES, ids=lambda v: type(v).__name__)
def test_sync_decorated_call_gives_one_type_from_loader_memory_and_shared_tier(
    lower: Lower, value: Any
) -> None:
    """The same through a decorated sync function."""
    writer, reader = _caches(lower)
    name = uuid.uuid4().hex

    @writer.cached(ttl=60, key="v:{name}")
    def load(name: str) -> Any:
        return value

    with writer.sync:
        assert same(load(name), value)
        assert same(load(name), value)
    if reader is not None:

        @reader.cached(ttl=60, key="v:{name}")
        def elsewhere(name: str) -> Any:
            raise AssertionError("the shared tier should have answered")

        with reader.sync:
            assert same(elsewhere(name), value)


@pytest.mark.parametrize(("label", "make", "named"), REFUSED[:4], ids=[r[0] for r in REFUSED[:4]])
async def test_a_decorated_call_returning_a_value_that_would_change_raises(
    lower: Lower, label: str, make: Callable[[], Any], named: str
) -> None:
    """A decorated function whose result cannot round-trip raises SerializationError, every call."""
    writer, _ = _caches(lower)

    @writer.cached(ttl=60, key="bad")
    async def load() -> Any:
        return make()

    async with writer:
        for _ in range(2):
            with pytest.raises(sc.SerializationError, match=named):
                await load()


_READER = """
import sys
import stratacache as sc
from tests.core import value_kinds as kinds

if sys.argv[2] == "register":
    for cls in (kinds.Point, kinds.Level, kinds.Box, kinds.Model):
        sc.register_type(cls)
cache = sc.Cache(tiers=[sc.RedisTier(url=sys.argv[1])], namespace="vf")
with cache.sync as sync:
    for key in ("point", "level", "box", "model"):
        value = sync.get(key)
        print(key, type(value).__name__)
"""


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["register", "none"])
def test_another_process_reads_the_type_once_registered_and_misses_before(
    redis_url: str, mode: str
) -> None:
    """An OS process that registered the types gets them back exactly; one that did not misses."""
    values = {"point": Point(1, 2), "level": Level.HIGH, "box": SAMPLES[5], "model": SAMPLES[6]}
    writer = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace="vf", default_ttl=60)
    with writer.sync as sync:
        for key, value in values.items():
            sync.set(key, value)
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _READER, redis_url, mode],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split("\n")
    expected = (
        ["point Point", "level Level", "box Box", "model Model"]
        if mode == "register"
        else ["point NoneType", "level NoneType", "box NoneType", "model NoneType"]
    )
    assert out[:4] == expected

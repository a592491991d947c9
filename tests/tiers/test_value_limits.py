"""Per-tier value size limits: a value too big for a tier is refused at set, nothing written."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import redis
from cryptography.fernet import Fernet

import stratacache as sc
from stratacache.core.codec import MAX_REDIS_VALUE, METADATA_RESERVE, EntryCodec

LIMIT = 64 * 1024
ENVELOPES: dict[str, Callable[[], list[Any]]] = {
    "none": list,
    "compressed": lambda: [sc.Compression(threshold=0)],
    "signed": lambda: [sc.HMACSigner(b"k" * 32)],
    "encrypted": lambda: [sc.FernetEncryption(Fernet.generate_key())],
    "all": lambda: [
        sc.Compression(threshold=0),
        sc.HMACSigner(b"k" * 32),
        sc.FernetEncryption(Fernet.generate_key()),
    ],
}


def _tier(kind: str, request: pytest.FixtureRequest) -> Any:
    if kind == "redis":
        return sc.RedisTier(url=request.getfixturevalue("redis_url"), max_value_size=LIMIT)
    if kind == "sqlite":
        return sc.SQLTier(url=request.getfixturevalue("sqlite_url"), max_value_size=LIMIT)
    return sc.SQLTier(url=request.getfixturevalue("postgres_url"), max_value_size=LIMIT)


@pytest.mark.parametrize("kind", ["redis", "sqlite", "postgres"])
@pytest.mark.parametrize("envelopes", sorted(ENVELOPES))
async def test_value_over_a_tier_limit_is_refused_and_nothing_is_written(
    request: pytest.FixtureRequest, kind: str, envelopes: str
) -> None:
    """Too big for the remote tier: SerializationError at set; no tier keeps old or new."""
    cache = sc.Cache(
        tiers=[sc.MemoryTier(), _tier(kind, request)],
        namespace="limits",
        envelopes=ENVELOPES[envelopes](),
        bus=None,
    )
    async with cache:
        limit = cache.codec.max_value_size
        assert limit is not None and 0 < limit < LIMIT
        await cache.set("k", "old")
        with pytest.raises(sc.SerializationError, match="limit"):
            await cache.set("k", "x" * LIMIT)
        with pytest.raises(sc.SerializationError, match="limit"):
            cache.sync.set("j", b"x" * LIMIT)
        with pytest.raises(sc.SerializationError):
            await cache.get_or_set("l", lambda: "x" * LIMIT)
        assert await cache.get("k") == "old"
        assert await cache.get("j") is None and await cache.get("l") is None
        # the largest accepted value does fit in the tier once sealed
        biggest = b"\xff" * (limit - 6)  # msgpack bin32 header: 5 bytes
        await cache.set("big", biggest, tags=["t" * 100])
        assert await cache.get("big") == biggest
        remote = next(s for n, s in cache.stats()["tiers"].items() if n != "memory")
        assert remote["errors"] == 0 and not remote["circuit_open"]


async def test_sealed_form_of_the_largest_value_fits_redis(redis_url: str) -> None:
    """Incompressible bytes at the computed limit, encrypted and tagged, fit the Redis limit."""
    cache = sc.Cache(
        tiers=[sc.RedisTier(url=redis_url, max_value_size=LIMIT)],
        namespace="limits",
        envelopes=[sc.Compression(threshold=0), sc.FernetEncryption(Fernet.generate_key())],
        bus=None,
    )
    async with cache:
        assert cache.codec.max_value_size is not None
        value = os.urandom(cache.codec.max_value_size - 6)
        await cache.set("k", value, tags=["a" * 200, "b" * 200])
        client = redis.Redis.from_url(redis_url)
        assert 0 < client.strlen(cache.full_key("k")) <= LIMIT
        client.close()


def test_default_limits_follow_the_storage() -> None:
    """Redis is held to 512 MiB and memcached (through aiocache) to 1 MiB, metadata included."""
    codec = EntryCodec()
    codec.limit_to([sc.MemoryTier(), sc.RedisTier()])
    assert codec.max_value_size == MAX_REDIS_VALUE - METADATA_RESERVE
    codec.limit_to([sc.MemoryTier()])
    assert codec.max_value_size is None


@pytest.mark.parametrize("bad", [0, -1, METADATA_RESERVE, 1.5, "1MB", True])
def test_bad_max_value_size_is_a_config_error(bad: object) -> None:
    """A max_value_size that is not an int above the metadata reserve is refused at build."""
    with pytest.raises(sc.ConfigError):
        sc.RedisTier(max_value_size=bad)  # type: ignore[arg-type]
    with pytest.raises(sc.ConfigError):
        sc.SQLTier(url="sqlite:///:memory:", max_value_size=bad)  # type: ignore[arg-type]

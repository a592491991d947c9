"""Signed and encrypted entries are bound to their key; tags are not stored in plaintext."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiocache
import pytest
import redis
import sqlalchemy
from cryptography.fernet import Fernet

import stratacache as sc
from stratacache.core.envelope import Envelope
from stratacache.tiers.aiocache import AiocacheTier

SIGNING_KEY = b"s" * 32
FERNET_KEY = Fernet.generate_key()
TABLE = "stratacache_entries"

ENVELOPES: dict[str, Callable[[], list[Envelope]]] = {
    "signed": lambda: [sc.HMACSigner(SIGNING_KEY)],
    "encrypted": lambda: [sc.FernetEncryption(FERNET_KEY)],
    "compressed+signed+encrypted": lambda: [
        sc.Compression(threshold=0),
        sc.HMACSigner(SIGNING_KEY),
        sc.FernetEncryption(FERNET_KEY),
    ],
}


@dataclass
class Storage:
    """A tier factory plus raw read/write of stored bytes, bypassing stratacache."""

    make_tier: Callable[[], Any]
    read: Callable[[str], bytes]
    write: Callable[[str, bytes], None]
    dump: Callable[[], bytes]
    sync: bool = True  # the tier serves cache.sync (aiocache is async-only)


def _redis_storage(url: str, through_aiocache: bool = False) -> Storage:
    client = redis.Redis.from_url(url)

    def make_tier() -> Any:
        if not through_aiocache:
            return sc.RedisTier(url=url)
        parts = redis.connection.parse_url(url)
        backend = aiocache.RedisCache(endpoint=parts["host"], port=parts["port"], db=parts["db"])
        return AiocacheTier(backend)

    def dump() -> bytes:
        parts = []
        for name in client.scan_iter("*"):
            parts.append(name)
            if client.type(name) == b"string":
                parts.append(client.get(name) or b"")
        return b"\n".join(parts)

    return Storage(
        make_tier=make_tier,
        read=lambda key: client.get(key) or b"",
        write=lambda key, data: client.set(key, data) and None,
        dump=dump,
        sync=not through_aiocache,
    )


def _sql_storage(url: str, engine_url: str) -> Storage:
    engine = sqlalchemy.create_engine(engine_url)

    def read(key: str) -> bytes:
        with engine.connect() as conn:
            q = sqlalchemy.text(f"SELECT value FROM {TABLE} WHERE key = :k")
            return bytes(conn.execute(q, {"k": key}).scalar_one())

    def write(key: str, data: bytes) -> None:
        with engine.begin() as conn:
            q = sqlalchemy.text(f"UPDATE {TABLE} SET value = :v WHERE key = :k")
            assert conn.execute(q, {"k": key, "v": data}).rowcount == 1

    def dump() -> bytes:
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text(f"SELECT key, value, tags FROM {TABLE}")).all()
            versions = conn.execute(sqlalchemy.text(f"SELECT * FROM {TABLE}_versions")).all()
        assert versions, "the tag invalidations left version rows to inspect"
        return repr(rows + versions).encode()

    return Storage(lambda: sc.SQLTier(url=url), read, write, dump)


@pytest.fixture(params=["redis", "sqlite", "postgres", "aiocache-redis"])
def storage(request: pytest.FixtureRequest) -> Storage:
    """Each byte-storing tier kind, with raw access to what it stores."""
    if request.param.endswith("redis"):
        url = request.getfixturevalue("redis_url")
        return _redis_storage(url, through_aiocache=request.param.startswith("aiocache"))
    if request.param == "sqlite":
        url = request.getfixturevalue("sqlite_url")
        return _sql_storage(url, url)
    url = request.getfixturevalue("postgres_url")
    return _sql_storage(url, url)


@pytest.fixture(params=sorted(ENVELOPES))
async def caches(
    request: pytest.FixtureRequest, storage: Storage
) -> AsyncIterator[tuple[Storage, sc.Cache, sc.Cache]]:
    """Two namespaces on one storage, both sealing entries with the same keys."""
    make = ENVELOPES[request.param]
    a = sc.Cache(tiers=[storage.make_tier()], namespace="a", envelopes=make(), bus=None)
    b = sc.Cache(tiers=[storage.make_tier()], namespace="b", envelopes=make(), bus=None)
    async with a, b:
        yield storage, a, b


async def test_value_moved_to_another_key_or_namespace_is_a_counted_miss(
    caches: tuple[Storage, sc.Cache, sc.Cache],
) -> None:
    """Bytes sealed for a:role:alice copied onto a:role:bob or b:role:alice read as a miss."""
    storage, a, b = caches
    await a.set("role:alice", "admin")
    await a.set("role:bob", "user")
    await b.set("role:alice", "guest")
    sealed = storage.read(a.full_key("role:alice"))
    storage.write(a.full_key("role:bob"), sealed)
    storage.write(b.full_key("role:alice"), sealed)

    assert await a.get("role:alice") == "admin"
    assert await a.get("role:bob") is None
    assert await b.get("role:alice") is None
    assert a.stats()["engine"]["moved_values"] == 1
    assert b.stats()["engine"]["moved_values"] == 1
    if storage.sync:
        assert a.sync.get("role:bob") is None
    for cache in (a, b):
        tier = next(iter(cache.stats()["tiers"].values()))
        assert tier["errors"] == 0 and not tier["circuit_open"]


async def test_tampered_freshness_metadata_is_a_miss(
    caches: tuple[Storage, sc.Cache, sc.Cache],
) -> None:
    """Flipping any byte of the sealed bytes (expiry included) never yields a value."""
    storage, a, _ = caches
    await a.set("k", "v", ttl=60)
    sealed = storage.read(a.full_key("k"))
    for i in range(0, len(sealed), max(1, len(sealed) // 16)):
        storage.write(a.full_key("k"), sealed[:i] + bytes([sealed[i] ^ 1]) + sealed[i + 1 :])
        assert await a.get("k") is None


async def test_encryption_keeps_tags_out_of_storage(storage: Storage) -> None:
    """With encryption, no tag name is readable in storage, and tag invalidation still works."""
    cache = sc.Cache(
        tiers=[storage.make_tier()],
        namespace="a",
        envelopes=[sc.FernetEncryption(FERNET_KEY)],
        bus=None,
    )
    async with cache:
        await cache.set("k", "v", tags=["patient:zq4711"])
        await cache.invalidate(tags=["other:1"])
        await cache.set("j", "w", tags=["patient:zq4711", "ward:b"])
        dumped = storage.dump()
        assert b"patient" not in dumped and b"ward" not in dumped and b"zq4711" not in dumped
        await cache.invalidate(tags=["patient:zq4711"])
        dumped = storage.dump()
        assert b"patient" not in dumped and b"zq4711" not in dumped
        assert await cache.get("k") is None and await cache.get("j") is None


async def test_tag_invalidation_reaches_entries_written_before_key_rotation(
    storage: Storage,
) -> None:
    """An entry tagged under the old encryption key is outdated after rotating to a new key."""
    new_key = Fernet.generate_key()
    old = sc.Cache(
        tiers=[storage.make_tier()],
        namespace="a",
        envelopes=[sc.FernetEncryption(FERNET_KEY)],
        bus=None,
    )
    async with old:
        await old.set("k", "v", tags=["t"])
    rotated = sc.Cache(
        tiers=[storage.make_tier()],
        namespace="a",
        envelopes=[sc.FernetEncryption([new_key, FERNET_KEY])],
        bus=None,
    )
    async with rotated:
        assert await rotated.get("k") == "v"
        await rotated.invalidate(tags=["t"])
        assert await rotated.get("k") is None

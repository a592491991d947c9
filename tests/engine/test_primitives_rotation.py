"""add/incr/touch while signing keys rotate: a process never overwrites what it cannot read.

Two caches on one shared tier stand for two processes in the middle of a rollout: one
already signs with the new key (``HMACSigner([new, old])``), the other holds the old
key only (``HMACSigner([old])``) and so cannot verify what the first one writes.
"""

from __future__ import annotations

import pytest

import stratacache as sc
from stratacache.core.envelope import Envelope
from stratacache.core.errors import TierError

OLD = b"o" * 32
NEW = b"n" * 32


@pytest.fixture(params=["redis", "sqlite", "postgres"])
def shared_url(request: pytest.FixtureRequest) -> str:
    """The shared tier both caches store in (real Redis, SQLite and PostgreSQL)."""
    fixture = {"redis": "redis_url", "sqlite": "sqlite_url", "postgres": "postgres_url"}
    return str(request.getfixturevalue(fixture[request.param]))


def _pair(url: str, encrypted: bool = False) -> tuple[sc.Cache, sc.Cache]:
    """(a cache holding the new and the old key, one holding only the old key)."""
    from cryptography.fernet import Fernet

    old_fernet, new_fernet = Fernet.generate_key(), Fernet.generate_key()

    def make(new: bool) -> sc.Cache:
        tier = sc.RedisTier(url=url) if url.startswith("redis") else sc.SQLTier(url)
        if encrypted:
            keys = [new_fernet, old_fernet] if new else [old_fernet]
            envelopes: list[Envelope] = [sc.FernetEncryption(keys)]
        else:
            envelopes = [sc.HMACSigner([NEW, OLD] if new else [OLD])]
        return sc.Cache([tier], namespace="rot", envelopes=envelopes, bus=False)

    return make(True), make(False)


@pytest.mark.parametrize("encrypted", [False, True])
async def test_old_key_process_does_not_overwrite_a_new_key_value(
    shared_url: str, encrypted: bool
) -> None:
    """add refuses and incr/touch raise where the value was sealed with a key not held
    (signing and encryption keys alike)."""
    rotated, behind = _pair(shared_url, encrypted)
    async with rotated, behind:
        assert await rotated.add("lock", "mine")
        assert await rotated.incr("n", 5) == 5
        assert not await behind.add("lock", "theirs")
        with pytest.raises(TierError, match="key this process does not hold"):
            await behind.incr("n")
        with pytest.raises(TierError, match="key this process does not hold"):
            await behind.touch("n", ttl=60)
        assert await rotated.get("lock") == "mine"
        assert await rotated.incr("n") == 6  # nothing was lost or reset
        assert await behind.ttl("n") is None  # a read: what cannot be opened is a miss
        assert behind.tiers.slots[0].stats.errors == 0  # not a failure of the tier


def test_old_key_process_does_not_overwrite_a_new_key_value_sync(shared_url: str) -> None:
    """The same through ``cache.sync``."""
    rotated, behind = _pair(shared_url)
    with rotated.sync as r, behind.sync as b:
        assert r.add("lock", "mine")
        assert r.incr("n", 5) == 5
        assert not b.add("lock", "theirs")
        with pytest.raises(TierError, match="key this process does not hold"):
            b.incr("n")
        assert r.get("lock") == "mine"
        assert r.incr("n") == 6
        assert b.ttl("n") is None
        assert behind.tiers.slots[0].stats.errors == 0


async def test_rotation_in_both_directions_keeps_counting(shared_url: str) -> None:
    """A process holding both keys updates values signed with either; no update is lost."""
    rotated, behind = _pair(shared_url)
    async with rotated, behind:
        assert await behind.incr("n", 1) == 1  # signed with the old key
        assert await rotated.incr("n", 1) == 2  # read with the old key, signed with the new
        assert await rotated.incr("n", 1) == 3
        assert not await rotated.add("n", 0)


async def test_moved_value_is_still_absent_for_add(shared_url: str) -> None:
    """A value sealed for another key is not this key's value: add stores over it."""
    rotated, _ = _pair(shared_url)
    async with rotated:
        assert await rotated.add("a", "A")
        tier = rotated.tiers.slots[0].tier
        raw = await _raw(tier, "rot:a")
        await _put_raw(tier, "rot:b", raw)
        assert await rotated.get("b") is None
        assert await rotated.add("b", "B")
        assert await rotated.get("b") == "B"


async def _raw(tier: object, key: str) -> bytes:
    _, token = await tier.read_versioned(key)  # type: ignore[attr-defined]
    assert isinstance(token, bytes)
    return token


async def _put_raw(tier: object, key: str, raw: bytes) -> None:
    if isinstance(tier, sc.SQLTier):
        with tier.store.connection() as conn:
            conn.execute(
                f"UPDATE {tier.store.table} SET value = {tier.store.mark} WHERE key = "
                f"{tier.store.mark}",
                (raw, key),
            )
            conn.execute(
                f"INSERT INTO {tier.store.table} (key, value, expires_at, tags, seq, size, atime)"
                f" SELECT {tier.store.mark}, value, expires_at, tags, seq, size, atime FROM"
                f" {tier.store.table} WHERE key = 'rot:a'",
                (key,),
            )
    else:
        import redis

        client = redis.Redis.from_url(tier.url)  # type: ignore[attr-defined]
        client.set(key, raw, px=60_000)
        client.close()

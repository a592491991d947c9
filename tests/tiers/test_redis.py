"""RedisTier specifics: failure and recovery, round trips, flat tag invalidation cost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis

import stratacache as sc
from stratacache.core.clock import ManualClock
from stratacache.core.entry import Entry
from stratacache.core.errors import ConfigError, TierError
from stratacache.core.tier import TierContext
from stratacache.tiers.redis import RedisTier

NS = "shop"  # as the shared ``tier`` fixture (tests/tiers/conftest.py)


@pytest.fixture
def redis_url(own_redis_url: str) -> str:
    """This module counts commands: a server of each test's own."""
    return own_redis_url


def commands(client: redis.Redis) -> int:
    """Commands the server processed so far (the INFO call itself counts as one)."""
    return int(client.info("stats")["total_commands_processed"])  # type: ignore[index]


def count_commands(client: redis.Redis, action: Callable[[], object]) -> int:
    """How many commands ``action`` made the server process (scripts count their calls too)."""
    before = commands(client)
    action()
    return commands(client) - before - 1


def test_bad_config_raises_config_error() -> None:
    """Invalid constructor arguments raise ConfigError at construction."""
    with pytest.raises(ConfigError):
        RedisTier(ttl=0)
    with pytest.raises(ConfigError):
        RedisTier(sentinels=[("127.0.0.1", 26379)])


async def test_physical_expiry_follows_entry_and_cap(
    redis_url: str, raw: redis.Redis, clock: ManualClock
) -> None:
    """PX is the entry's remaining life, capped by the tier ttl; none when neither is set."""
    t = RedisTier(redis_url, ttl=100)
    await t.start(TierContext(NS, clock=clock))
    now = clock.time()
    await t.set("shop:a", Entry(1, now, expires=now + 10, stale_until=now + 40))
    await t.set("shop:b", Entry(1, now, expires=now + 1000))
    await t.close()
    assert 30_000 < int(raw.pttl("shop:a")) <= 40_000  # type: ignore[arg-type]
    assert 90_000 < int(raw.pttl("shop:b")) <= 100_000  # type: ignore[arg-type]
    untimed = RedisTier(redis_url)
    await untimed.start(TierContext(NS, clock=clock))
    await untimed.set("shop:c", Entry(1, now))
    await untimed.close()
    assert int(raw.pttl("shop:c")) == -1  # type: ignore[arg-type]


def test_get_many_of_100_keys_is_one_round_trip(
    tier: RedisTier, raw: redis.Redis, clock: ManualClock
) -> None:
    """get_many of 100 untagged keys is a single command (one MGET)."""
    keys = [f"shop:k{i}" for i in range(100)]
    tier.set_many_sync({k: Entry(k, clock.time()) for k in keys})
    assert count_commands(raw, lambda: tier.get_many_sync(keys)) == 1
    assert len(tier.get_many_sync(keys)) == 100


def test_tagged_hit_is_one_round_trip(
    tier: RedisTier, raw: redis.Redis, clock: ManualClock
) -> None:
    """With its tags known, a tagged hit is one EVALSHA (inner calls: GETs of entry and tags)."""
    tier.set_sync("shop:t", Entry(1, clock.time(), tags=("a", "b")))
    tier.get_sync("shop:t", ("a", "b"))
    assert count_commands(raw, lambda: tier.get_sync("shop:t", ("a", "b"))) == 4


def test_untagged_hit_is_one_plain_get(
    tier: RedisTier, raw: redis.Redis, clock: ManualClock
) -> None:
    """An untagged hit is a single GET; a tagged entry read without its tags costs a second trip."""
    tier.set_sync("shop:u", Entry(1, clock.time()))
    tier.set_sync("shop:t", Entry(2, clock.time(), tags=("a",)))
    assert count_commands(raw, lambda: tier.get_sync("shop:u")) == 1
    assert count_commands(raw, lambda: tier.get_sync("shop:t")) == 1 + 3  # GET, EVALSHA(+2)
    assert tier.get_sync("shop:t").value == 2  # type: ignore[union-attr]
    tier.invalidate_tags_sync(["a"])
    assert tier.get_sync("shop:t") is None


def test_tag_invalidation_cost_is_flat(
    tier: RedisTier, raw: redis.Redis, clock: ManualClock
) -> None:
    """Invalidating a tag takes the same few commands for 10 or 10,000 entries."""
    costs = []
    for n, tag in ((10, "small"), (10_000, "big")):
        tier.set_many_sync(
            {f"shop:{tag}:{i}": Entry(i, clock.time(), tags=(tag,)) for i in range(n)}
        )
        costs.append(count_commands(raw, lambda tag=tag: tier.invalidate_tags_sync([tag])))
        assert tier.get_many_sync([f"shop:{tag}:{i}" for i in range(0, n, 97)]) == {}
    assert costs[0] == costs[1] <= 4  # EVALSHA + INCR + PTTL (+ PEXPIRE)


def test_invalidated_tag_versions_expire(tier: RedisTier, raw: redis.Redis) -> None:
    """An invalidated tag version is kept for the marker time, then goes (see test_redis_growth)."""
    tier.invalidate_tags_sync(["t"])
    names = [k for k in raw.scan_iter(match="*__tagv__*")]
    assert names and all(int(raw.ttl(k)) > 0 for k in names)  # type: ignore[arg-type]


def test_clear_never_flushes_foreign_keys(
    tier: RedisTier, raw: redis.Redis, clock: ManualClock
) -> None:
    """clear leaves keys outside the namespace, including lookalike prefixes."""
    raw.set("shopping:x", b"1")
    raw.set("other", b"2")
    tier.set_sync("shop:x", Entry(1, clock.time()))
    tier.clear_sync()
    assert raw.get("shopping:x") == b"1" and raw.get("other") == b"2"
    assert raw.get("shop:x") is None


def test_delete_prefix_many_batches(tier: RedisTier, clock: ManualClock) -> None:
    """delete_prefix removes more keys than one SCAN batch holds."""
    tier.set_many_sync({f"shop:p:{i}": Entry(i, clock.time()) for i in range(2500)})
    assert tier.delete_prefix_sync("shop:p:") == 2500
    assert tier.get_many_sync([f"shop:p:{i}" for i in range(0, 2500, 50)]) == {}


@pytest.mark.slow
async def test_killed_server_fails_fast_then_recovers(
    redis_factory: Callable[..., Any], clock: ManualClock, wait_until: Callable[..., None]
) -> None:
    """With the server killed the tier raises TierError within a bound; after restart it works."""
    server = redis_factory()
    t = RedisTier(server.url)
    await t.start(TierContext(NS, clock=clock))
    try:
        await t.set("shop:k", Entry(1, clock.time()))
        server.stop()
        # wait_for only guards against a hang: the tier's own timeouts must fire first
        with pytest.raises(TierError):
            await asyncio.wait_for(t.get("shop:k"), 5.0)
        with pytest.raises(TierError):
            await asyncio.wait_for(t.set("shop:k", Entry(2, clock.time())), 5.0)
        with pytest.raises(TierError):
            t.get_sync("shop:k")
        server.start()
        wait_until(lambda: _ok(t), what="sync path to work again")
        assert await t.set("shop:k", Entry(3, clock.time()))
        got = await t.get("shop:k")
        assert got is not None and got.value == 3
    finally:
        await t.close()


def _ok(t: RedisTier) -> bool:
    try:
        t.get_sync("shop:k")
    except TierError:
        return False
    return True


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:99999/0", "http://127.0.0.1:6379", "127.0.0.1:6379", "redis://h:-1"]
)
def test_a_bad_url_is_refused_at_construction(url: str) -> None:
    """A URL redis-py would only refuse when connecting (inside a call) is a ConfigError here."""
    with pytest.raises(sc.ConfigError, match="RedisTier url"):
        sc.RedisTier(url=url)


async def test_get_many_checks_tags_in_either_mode(tier: RedisTier, clock: ManualClock) -> None:
    """get_many answers alike whether it checks tags client-side (MGET) or in the script."""
    keys = [f"shop:g{i}" for i in range(10)]
    await tier.set_many(
        {
            k: Entry(i, clock.time(), tags=(f"t{i % 2}",) if i < 6 else ())
            for i, k in enumerate(keys)
        }
    )
    for expect_tags in (False, True, False, True):
        tier.expect_tags = expect_tags
        assert {k: e.value for k, e in (await tier.get_many(keys)).items()} == {
            k: i for i, k in enumerate(keys)
        }
    assert tier.expect_tags  # the batch held tagged entries: the next one runs the script
    await tier.invalidate_tags(["t0"])
    for expect_tags in (False, True):
        tier.expect_tags = expect_tags
        got = await tier.get_many(keys)
        assert sorted(got) == sorted(k for i, k in enumerate(keys) if i >= 6 or i % 2)
    await tier.delete_many(keys[:6])
    await tier.get_many(keys)
    assert not tier.expect_tags  # none tagged any more: back to a plain MGET


async def test_get_many_misses_the_gone_the_moved_and_the_foreign(
    tier: RedisTier, clock: ManualClock, raw: redis.Redis
) -> None:
    """A batch read returns only live entries of their own key, in either mode: an expired,
    a corrupt, a foreign and a moved value are misses, the last three counted."""
    now = clock.time()
    await tier.set_many(
        {
            "shop:live": Entry("a", now, expires=now + 1000),
            "shop:tagged": Entry("b", now, expires=now + 1000, tags=("t",)),
            "shop:old": Entry("c", now, expires=now + 10),
        }
    )
    raw.set("shop:corrupt", b"\x00\x9a\x03junk")
    raw.set("shop:foreign", b"hello")
    raw.set("shop:moved", raw.get("shop:live") or b"")
    clock.advance(100)  # shop:old is past its end (Redis still holds it)
    keys = ["shop:live", "shop:tagged", "shop:old", "shop:corrupt", "shop:foreign", "shop:moved"]
    for expect_tags in (False, True):
        tier.expect_tags = expect_tags
        before = tier.decode_errors
        got = await tier.get_many([*keys, "shop:absent"])
        assert {k: e.value for k, e in got.items()} == {"shop:live": "a", "shop:tagged": "b"}
        assert tier.decode_errors - before == 3
        assert {k: e.value for k, e in tier.get_many_sync(keys).items()} == {
            "shop:live": "a",
            "shop:tagged": "b",
        }

"""``MemoryTier`` on its own: bounds, TTL cap, tags, leases and configuration errors.

The behaviour every tier shares is in ``test_conformance.py``; W-TinyLFU admission is in
``test_tinylfu.py``.
"""

from __future__ import annotations

import pytest

from stratacache.core.clock import ManualClock
from stratacache.core.codec import EntryCodec
from stratacache.core.entry import Entry
from stratacache.core.errors import ConfigError
from stratacache.core.tier import TierContext
from stratacache.tiers.memory import MemoryTier


async def _started(tier: MemoryTier, clock: ManualClock | None = None) -> MemoryTier:
    await tier.start(TierContext("ns", EntryCodec(), clock or ManualClock()))
    return tier


@pytest.mark.parametrize(
    "kwargs",
    [{"maxsize": 0}, {"maxsize": "10"}, {"ttl": -1}, {"max_bytes": 0}, {"policy": "lfu"}],
)
def test_bad_configuration_is_refused_at_construction(kwargs: dict[str, object]) -> None:
    """A bad bound, TTL or policy raises ``ConfigError`` where the tier is built."""
    with pytest.raises(ConfigError):
        MemoryTier(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", ["lru", "tinylfu"])
async def test_entries_stay_within_maxsize(policy: str) -> None:
    """However many keys are written, at most ``maxsize`` entries are held."""
    tier = await _started(MemoryTier(maxsize=10, policy=policy))
    for i in range(50):
        await tier.set(f"k{i}", Entry(i, created=0.0))
    assert len(tier) <= 10 and tier.evictions >= 40


async def test_lru_keeps_the_recently_read() -> None:
    """With ``policy="lru"`` the entry read last survives the next eviction."""
    tier = await _started(MemoryTier(maxsize=2, policy="lru"))
    await tier.set("a", Entry(1, created=0.0))
    await tier.set("b", Entry(2, created=0.0))
    await tier.get("a")
    await tier.set("c", Entry(3, created=0.0))
    assert await tier.get("a") is not None and await tier.get("b") is None


async def test_an_entry_past_its_stale_window_is_gone() -> None:
    """A read at or after the entry's end returns None and removes it."""
    clock = ManualClock(start=0.0)
    tier = await _started(MemoryTier(), clock)
    await tier.set("k", Entry("v", created=0.0, expires=5.0))
    clock.set(5.0)
    assert await tier.get("k") is None and len(tier) == 0


async def test_invalidating_a_tag_removes_its_entries_and_kills_them() -> None:
    """Tagged entries go with their tag, and holders of the objects see them dead."""
    tier = await _started(MemoryTier())
    tagged = Entry("v", created=0.0, tags=("t",))
    await tier.set("a", tagged)
    await tier.set("b", Entry("w", created=0.0))
    await tier.invalidate_tags(["t"])
    assert await tier.get("a") is None and await tier.get("b") is not None
    assert not tagged.alive


async def test_a_lease_voided_by_a_delete_refuses_the_set() -> None:
    """A write under a lease taken before a delete of the key is refused (no stale set)."""
    tier = await _started(MemoryTier())
    lease = await tier.lease("k", ())
    await tier.delete_many(["k"])
    assert await tier.set("k", Entry("old", created=0.0), lease) is False
    assert await tier.get("k") is None


async def test_clear_and_prefix_delete() -> None:
    """``delete_prefix`` removes only matching keys; ``clear`` removes the rest."""
    tier = await _started(MemoryTier())
    for key in ("a:1", "a:2", "b:1"):
        await tier.set(key, Entry(key, created=0.0))
    assert await tier.delete_prefix("a:") == 2
    await tier.clear()
    assert len(tier) == 0


async def test_an_unchallenged_claim_stores() -> None:
    """A set under a claim nothing came between is stored, and voids an older lease."""
    tier = await _started(MemoryTier())
    lease = await tier.lease("k", ())
    claim = await tier.claim("k")
    assert await tier.set("k", Entry("mine", created=0.0), claim) is True
    assert (await tier.get("k")).value == "mine"  # type: ignore[union-attr]
    assert await tier.set("k", Entry("load", created=0.0), lease) is False


@pytest.mark.parametrize(
    "between", ["claim", "leased set", "set", "delete", "tag", "prefix", "clear"]
)
async def test_a_claim_something_came_between_drops_the_key(between: str) -> None:
    """A later claim, a stored write or a removal after a claim refuses its set and leaves
    the key absent (the tier below holds the value that counts)."""
    tier = await _started(MemoryTier())
    await tier.set("k", Entry("old", created=0.0, tags=("t",)))
    claim = await tier.claim("k")
    if between == "claim":
        await tier.claim("k")
    elif between == "leased set":
        await tier.set("k", Entry("load", created=0.0), await tier.lease("k", ()))
    elif between == "set":
        await tier.set("k", Entry("other", created=0.0))
    elif between == "delete":
        await tier.delete_many(["k"])
    elif between == "tag":
        await tier.invalidate_tags(["t"])
    elif between == "prefix":
        await tier.delete_prefix("k")
    else:
        await tier.clear()
    assert await tier.set("k", Entry("mine", created=0.0, tags=("t",)), claim) is False
    assert await tier.get("k") is None


async def test_a_refused_claim_refuses_the_other_claims_in_flight() -> None:
    """Two writes claimed the key: the older one is refused and drops it, and then the newer
    one is refused too (the tiers below may hold either value)."""
    tier = await _started(MemoryTier())
    first, second = await tier.claim("k"), await tier.claim("k")
    assert await tier.set("k", Entry("first", created=0.0), first) is False
    assert await tier.set("k", Entry("second", created=0.0), second) is False
    assert await tier.get("k") is None


async def test_a_batch_claim_stores_the_keys_nothing_came_between() -> None:
    """``set_many`` under one claim stores the keys it still holds and drops the others."""
    tier = await _started(MemoryTier())
    claim = await tier.claim_many(["a", "b", "c"])
    await tier.set("b", Entry("other", created=0.0))
    await tier.set_many({k: Entry(k, created=0.0) for k in "abc"}, claim)
    found = await tier.get_many(["a", "b", "c"])
    assert {k: e.value for k, e in found.items()} == {"a": "a", "c": "c"}


async def test_abandoned_claims_are_bounded() -> None:
    """Claims of writes that never came back are let go past a bound; a write still holding
    one then drops its key instead of storing it."""
    tier = await _started(MemoryTier())
    claim = await tier.claim("k")
    for i in range(5000):
        await tier.claim(f"gone{i}")
    assert len(tier._claims) <= 4096
    assert await tier.set("k", Entry("late", created=0.0), claim) is False


async def test_a_released_claim_is_let_go() -> None:
    """``release`` lets go of a claim nothing will store under; another write's is kept."""
    tier = await _started(MemoryTier())
    declined = await tier.claim("k")
    await tier.release("k", declined)
    assert tier._claims == {}
    newer = await tier.claim("k")
    await tier.release("k", declined)
    assert await tier.set("k", Entry("newer", created=0.0), newer) is True

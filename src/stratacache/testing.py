"""The tier conformance suite: the behaviour every ``Tier`` must show, as pytest tests.

Subclass ``TierConformance`` in a test module and provide the fixtures it needs::

    class TestMyTier(TierConformance):
        @pytest.fixture
        def tier(self):                    # required: a new, *unstarted* tier
            return MyTier(...)

        @pytest.fixture
        def tier_twin(self):               # optional: another tier on the same storage
            return MyTier(...)

        @pytest.fixture
        def write_raw(self, started):      # optional: write bytes straight into storage
            return lambda key, data: ...

        @pytest.fixture
        def physical_ttl(self, started):   # optional: seconds the storage keeps ``key``
            return lambda key: ...

The suite starts ``tier`` itself with ``TierContext(namespace=NAMESPACE,
clock=<ManualClock>)`` and closes it afterwards. Tests whose optional fixture
is missing are skipped. Requires pytest-asyncio (``asyncio_mode = "auto"``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest

from .core.clock import ManualClock
from .core.entry import Entry
from .core.tier import SyncTier, Tier, TierContext

NAMESPACE = "conf"
OTHER_NAMESPACE = "conf-other"

#: values a tier must return equal (and of the same type) after a round trip
SAMPLE_VALUES: list[Any] = [
    None,
    True,
    0,
    -(2**70),
    3.25,
    "",
    "héllo",
    b"\x00\xff",
    [1, "a", None],
    (1, 2),
    {"a": {"b": [1, 2]}},
    {1, 2, 3},
    frozenset({"x"}),
    Decimal("1.10"),
    uuid.UUID(int=7),
    dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc),
    dt.date(2024, 5, 1),
    dt.timedelta(seconds=90),
    "x" * 100_000,
]


def _key(name: str) -> str:
    return f"{NAMESPACE}:{name}"


class TierConformance:
    """Tests every tier passes; see the module docstring for the fixtures to provide."""

    # -- fixtures ----------------------------------------------------------------------------
    @pytest.fixture
    def clock(self) -> ManualClock:
        """The clock the tier under test reads time from."""
        return ManualClock(start=time.time())

    @pytest.fixture
    async def started(self, tier: Tier, clock: ManualClock) -> AsyncIterator[Tier]:
        """``tier`` started on the conformance namespace with the manual clock."""
        await tier.start(TierContext(namespace=NAMESPACE, clock=clock))
        await tier.clear()
        try:
            yield tier
        finally:
            await tier.close()

    @pytest.fixture
    def tier_twin(self) -> Tier:
        """Override: a second unstarted tier on the same storage (for namespace isolation)."""
        pytest.skip("no tier_twin fixture: the tier has no storage shared between instances")

    @pytest.fixture
    def write_raw(self) -> Callable[[str, bytes], Any]:
        """Override: a callable writing raw bytes under a key, bypassing the tier."""
        pytest.skip("no write_raw fixture: the tier does not store bytes")

    @pytest.fixture
    def physical_ttl(self) -> Callable[[str], float | None]:
        """Override: a callable giving the seconds the storage will keep a key."""
        pytest.skip("no physical_ttl fixture: the storage has no physical expiry to inspect")

    def entry(
        self, clock: ManualClock, value: Any = "v", ttl: float | None = 600, **kw: Any
    ) -> Entry:
        """An entry created now that expires after ``ttl`` seconds (None: never)."""
        now = clock.time()
        return Entry(value, created=now, expires=None if ttl is None else now + ttl, **kw)

    # -- round trips -------------------------------------------------------------------------
    async def test_round_trip_values(self, started: Tier, clock: ManualClock) -> None:
        """Every supported value type comes back equal and of the same type."""
        for i, value in enumerate(SAMPLE_VALUES):
            assert await started.set(_key(f"v{i}"), self.entry(clock, value))
        for i, value in enumerate(SAMPLE_VALUES):
            got = await started.get(_key(f"v{i}"))
            assert got is not None, value
            assert got.value == value and type(got.value) is type(value)

    async def test_round_trip_metadata(self, started: Tier, clock: ManualClock) -> None:
        """Entry timestamps, cost and tags survive a round trip."""
        now = clock.time()
        entry = Entry(
            1,
            created=now,
            expires=now + 60,
            refresh_after=now + 30,
            stale_until=now + 90,
            cost=0.5,
            tags=("t1", "t2"),
        )
        await started.set(_key("meta"), entry)
        got = await started.get(_key("meta"))
        assert got is not None
        assert (got.created, got.expires, got.refresh_after, got.stale_until, got.cost) == (
            now,
            now + 60,
            now + 30,
            now + 90,
            0.5,
        )
        assert set(got.tags) == {"t1", "t2"}

    async def test_miss(self, started: Tier) -> None:
        """A key never written is a miss (None), not an error."""
        assert await started.get(_key("absent")) is None

    async def test_overwrite(self, started: Tier, clock: ManualClock) -> None:
        """A second set replaces the first value."""
        await started.set(_key("k"), self.entry(clock, 1))
        await started.set(_key("k"), self.entry(clock, 2))
        got = await started.get(_key("k"))
        assert got is not None and got.value == 2

    async def test_get_many(self, started: Tier, clock: ManualClock) -> None:
        """get_many returns exactly the hits, keyed by the keys asked for."""
        await started.set(_key("a"), self.entry(clock, "A"))
        await started.set(_key("b"), self.entry(clock, "B"))
        found = await started.get_many([_key("a"), _key("missing"), _key("b")])
        assert {k: e.value for k, e in found.items()} == {_key("a"): "A", _key("b"): "B"}
        assert await started.get_many([]) == {}

    async def test_set_many(self, started: Tier, clock: ManualClock) -> None:
        """set_many stores every entry, tagged or not."""
        batch = {
            _key(f"m{i}"): self.entry(clock, i, tags=("t",) if i % 2 else ()) for i in range(20)
        }
        await started.set_many(batch)
        found = await started.get_many(list(batch))
        assert {k: e.value for k, e in found.items()} == {k: e.value for k, e in batch.items()}

    # -- removal and leases ------------------------------------------------------------------
    async def test_delete_many(self, started: Tier, clock: ManualClock) -> None:
        """delete_many removes the keys, counts those that existed and leaves the rest."""
        await started.set(_key("a"), self.entry(clock))
        await started.set(_key("b"), self.entry(clock))
        assert await started.delete_many([_key("a"), _key("nope")]) == 1
        assert await started.get(_key("a")) is None
        assert await started.get(_key("b")) is not None

    async def test_lease_accepted_when_nothing_changed(
        self, started: Tier, clock: ManualClock
    ) -> None:
        """A set with an untouched lease is stored."""
        lease = await started.lease(_key("k"), ["t"])
        assert await started.set(_key("k"), self.entry(clock, tags=("t",)), lease)
        assert await started.get(_key("k")) is not None

    async def test_delete_voids_lease(self, started: Tier, clock: ManualClock) -> None:
        """A set whose lease was taken before a delete of its key is refused."""
        lease = await started.lease(_key("k"), [])
        await started.delete_many([_key("k")])
        assert not await started.set(_key("k"), self.entry(clock), lease)
        assert await started.get(_key("k")) is None

    async def test_delete_of_other_key_keeps_lease(self, started: Tier, clock: ManualClock) -> None:
        """Deleting an unrelated key does not void a lease."""
        lease = await started.lease(_key("k"), [])
        await started.delete_many([_key("other")])
        assert await started.set(_key("k"), self.entry(clock), lease)

    @pytest.mark.parametrize("how", ["set", "set_many"])
    async def test_write_voids_lease(self, started: Tier, clock: ManualClock, how: str) -> None:
        """A write made while a load holds a lease wins over the load's write."""
        for name in ("k", "fresh"):  # one lease taken by a miss's read, one asked for alone
            if name == "k":
                assert await started.get(_key(name)) is None
            lease = await started.lease(_key(name), [])
            if how == "set":
                assert await started.set(_key(name), self.entry(clock, "new"))
            else:
                await started.set_many({_key(name): self.entry(clock, "new")})
            assert not await started.set(_key(name), self.entry(clock, "old"), lease)
            got = await started.get(_key(name))
            assert got is not None and got.value == "new"

    async def test_twin_write_voids_lease(
        self, started: Tier, tier_twin: Tier, clock: ManualClock
    ) -> None:
        """A write by another process during a lease wins over the lease holder's write."""
        if not getattr(started, "shared", True):
            pytest.skip("the twin does not share storage with a process-local tier")
        await tier_twin.start(TierContext(namespace=NAMESPACE, clock=clock))
        try:
            for name in ("a", "b"):
                assert await started.get(_key(name)) is None
                lease = await started.lease(_key(name), [])
                if name == "a":
                    assert await tier_twin.set(_key(name), self.entry(clock, "new"))
                else:
                    await tier_twin.set_many({_key(name): self.entry(clock, "new")})
                assert not await started.set(_key(name), self.entry(clock, "old"), lease)
                got = await tier_twin.get(_key(name))
                assert got is not None and got.value == "new"
        finally:
            await tier_twin.close()

    async def test_delete_prefix(self, started: Tier, clock: ManualClock) -> None:
        """delete_prefix removes the keys under the prefix only, and voids their leases."""
        for name in ("r:1", "r:2", "r:3", "s:1"):
            await started.set(_key(name), self.entry(clock))
        lease = await started.lease(_key("r:4"), [])
        assert await started.delete_prefix(_key("r:")) == 3
        assert await started.get_many([_key("r:1"), _key("r:2"), _key("r:3")]) == {}
        assert await started.get(_key("s:1")) is not None
        assert not await started.set(_key("r:4"), self.entry(clock), lease)

    async def test_delete_prefix_is_literal(self, started: Tier, clock: ManualClock) -> None:
        """Wildcard characters in a prefix match only themselves."""
        await started.set(_key("a*b"), self.entry(clock))
        await started.set(_key("a_b"), self.entry(clock))
        await started.set(_key("a%b"), self.entry(clock))
        assert await started.delete_prefix(_key("a*")) == 1
        assert await started.delete_prefix(_key("a_")) == 1
        assert await started.get(_key("a%b")) is not None

    async def test_clear_voids_lease(self, started: Tier, clock: ManualClock) -> None:
        """clear removes the namespace's entries and voids outstanding leases."""
        await started.set(_key("a"), self.entry(clock))
        lease = await started.lease(_key("b"), [])
        await started.clear()
        assert await started.get(_key("a")) is None
        assert not await started.set(_key("b"), self.entry(clock), lease)

    async def test_clear_keeps_other_namespaces(
        self, started: Tier, tier_twin: Tier, clock: ManualClock
    ) -> None:
        """clear removes only its own namespace from shared storage."""
        await tier_twin.start(TierContext(namespace=OTHER_NAMESPACE, clock=clock))
        try:
            foreign = f"{OTHER_NAMESPACE}:k"
            assert await tier_twin.set(foreign, self.entry(clock, "theirs"))
            await started.set(_key("k"), self.entry(clock, "ours"))
            await started.clear()
            assert await started.get(_key("k")) is None
            got = await tier_twin.get(foreign)
            assert got is not None and got.value == "theirs"
            await tier_twin.clear()
        finally:
            await tier_twin.close()

    # -- time --------------------------------------------------------------------------------
    async def test_expired_entry_is_a_miss(self, started: Tier, clock: ManualClock) -> None:
        """An entry past its hard TTL (and no grace window) is never returned."""
        await started.set(_key("k"), self.entry(clock, ttl=10))
        clock.advance(11)
        assert await started.get(_key("k")) is None
        assert await started.get_many([_key("k")]) == {}

    async def test_stale_entry_kept_until_stale_until(
        self, started: Tier, clock: ManualClock
    ) -> None:
        """An expired entry is still returned inside its stale window, not after it."""
        now = clock.time()
        await started.set(
            _key("k"), Entry("v", created=now, expires=now + 10, stale_until=now + 100)
        )
        clock.advance(50)
        got = await started.get(_key("k"))
        assert got is not None and got.is_expired(clock.time())
        clock.advance(51)
        assert await started.get(_key("k")) is None

    async def test_physical_ttl(
        self, started: Tier, clock: ManualClock, physical_ttl: Callable[[str], float | None]
    ) -> None:
        """The storage keeps an entry no longer than its end, capped by the tier's ttl."""
        await started.set(_key("long"), self.entry(clock, ttl=10**6))
        await started.set(_key("short"), self.entry(clock, ttl=30))
        long_ttl, short_ttl = physical_ttl(_key("long")), physical_ttl(_key("short"))
        cap = started.ttl if started.ttl is not None else 10**6
        assert long_ttl is not None and 0 < long_ttl <= cap + 1
        assert short_ttl is not None and 0 < short_ttl <= 31

    # -- tags --------------------------------------------------------------------------------
    async def test_tag_invalidation(self, started: Tier, clock: ManualClock) -> None:
        """Invalidating a tag makes its entries miss and leaves the others."""
        await started.set(_key("a"), self.entry(clock, tags=("user:1",)))
        await started.set(_key("b"), self.entry(clock, tags=("user:1", "x")))
        await started.set(_key("c"), self.entry(clock, tags=("user:2",)))
        await started.set(_key("d"), self.entry(clock))
        await started.invalidate_tags(["user:1"])
        found = await started.get_many([_key(n) for n in "abcd"])
        assert set(found) == {_key("c"), _key("d")}
        assert await started.get(_key("a")) is None

    async def test_write_after_tag_invalidation_is_fresh(
        self, started: Tier, clock: ManualClock
    ) -> None:
        """An entry written after its tag was invalidated is a hit."""
        await started.invalidate_tags(["t"])
        await started.set(_key("k"), self.entry(clock, tags=("t",)))
        assert await started.get(_key("k")) is not None

    async def test_tag_invalidation_voids_lease(self, started: Tier, clock: ManualClock) -> None:
        """A set whose lease predates an invalidation of one of its tags is refused."""
        lease = await started.lease(_key("k"), ["t"])
        await started.invalidate_tags(["t"])
        assert not await started.set(_key("k"), self.entry(clock, tags=("t",)), lease)
        assert await started.get(_key("k")) is None

    async def test_unrelated_tag_keeps_lease(self, started: Tier, clock: ManualClock) -> None:
        """Invalidating a tag the lease does not name leaves the lease valid."""
        lease = await started.lease(_key("k"), ["t"])
        await started.invalidate_tags(["other"])
        assert await started.set(_key("k"), self.entry(clock, tags=("t",)), lease)

    # -- bad data ----------------------------------------------------------------------------
    async def test_corrupt_bytes_are_a_miss(
        self, started: Tier, write_raw: Callable[[str, bytes], Any]
    ) -> None:
        """Garbage in the storage reads as a miss and is counted in ``decode_errors``."""
        before = getattr(started, "decode_errors", 0)
        for i, junk in enumerate([b"", b"\x00", b"\x01garbage", b"\x00\x93\x01\x02", b"\xff" * 64]):
            result = write_raw(_key(f"junk{i}"), junk)
            if asyncio.iscoroutine(result):
                await result
        keys = [_key(f"junk{i}") for i in range(5)]
        for key in keys:
            assert await started.get(key) is None
        assert await started.get_many(keys) == {}
        assert getattr(started, "decode_errors", 0) > before

    # -- sync API ----------------------------------------------------------------------------
    async def test_sync_api_parity(self, started: Tier, clock: ManualClock) -> None:
        """The blocking methods behave as the async ones, from a thread without a loop."""
        if not isinstance(started, SyncTier):
            pytest.skip(f"{type(started).__name__} is async-only")
        sync: SyncTier = started

        def scenario() -> None:
            assert sync.set_sync(_key("s1"), self.entry(clock, 1, tags=("t",)))
            sync.set_many_sync(
                {_key("s2"): self.entry(clock, 2), _key("p:1"): self.entry(clock, 3)}
            )
            got = sync.get_sync(_key("s1"))
            assert got is not None and got.value == 1
            assert set(sync.get_many_sync([_key("s1"), _key("s2"), _key("zz")])) == {
                _key("s1"),
                _key("s2"),
            }
            for name in ("w1", "w2"):  # a write during a lease wins over the lease holder's
                assert sync.get_sync(_key(name)) is None
                lease = sync.lease_sync(_key(name), [])
                if name == "w1":
                    assert sync.set_sync(_key(name), self.entry(clock, "new"))
                else:
                    sync.set_many_sync({_key(name): self.entry(clock, "new")})
                assert not sync.set_sync(_key(name), self.entry(clock, "old"), lease)
                found = sync.get_sync(_key(name))
                assert found is not None and found.value == "new"
            lease = sync.lease_sync(_key("s3"), ["t"])
            sync.invalidate_tags_sync(["t"])
            assert not sync.set_sync(_key("s3"), self.entry(clock, tags=("t",)), lease)
            assert sync.get_sync(_key("s1")) is None
            assert sync.delete_many_sync([_key("s2")]) == 1
            assert sync.delete_prefix_sync(_key("p:")) == 1
            sync.set_sync(_key("s4"), self.entry(clock))
            sync.clear_sync()
            assert sync.get_sync(_key("s4")) is None

        await asyncio.to_thread(scenario)

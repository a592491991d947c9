"""Racing plain writes of one key never leave memory holding what the tier below does not.

A gate on the lower tier (Redis or SQLite) holds one chosen write of it, before or
after it runs, until the test opens the gate; meanwhile another write, delete or
read-through of the same key runs to its end. Whatever the order, once every call
has returned, memory holds the lower tier's value or nothing, and a read answers
the lower tier's value.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from tests.waiting import TIMEOUT, poll, wait_until

import stratacache as sc
from stratacache.core.entry import Entry

Match = Callable[[tuple[Any, ...]], bool]


class Gate:
    """Holds the first lower-tier call ``op`` whose arguments ``match``, until ``open()``."""

    def __init__(self, op: str, match: Match, before: bool = False) -> None:
        self.op, self.match, self.before = op, match, before
        self.armed = True
        self.reached = threading.Event()
        self.opened = threading.Event()

    def takes(self, op: str, args: tuple[Any, ...], before: bool) -> bool:
        if self.armed and before == self.before and op == self.op and self.match(args):
            self.armed = False
            return True
        return False

    def open(self) -> None:
        self.opened.set()

    async def hold(self) -> None:
        self.reached.set()
        await poll(self.opened.is_set, what=f"the test to open the {self.op} gate")

    def hold_sync(self) -> None:
        self.reached.set()
        assert self.opened.wait(TIMEOUT), f"the {self.op} gate was never opened"


def gated(base: type[Any]) -> type[Any]:
    """``base`` whose writes and deletes pass the gates in ``self.gates`` (async and blocking)."""

    class Gated(base):  # type: ignore[misc,valid-type]
        gates: list[Gate]
        #: run once, after the first miss (async and blocking reads)
        on_miss: Callable[[], Any] | None = None
        on_miss_sync: Callable[[], Any] | None = None

        async def get(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
            entry: Entry | None = await super().get(key, tags)
            hook, self.on_miss = self.on_miss, None
            if entry is None and hook is not None:
                await hook()
            gate = self._gate("get", (key, entry), False)  # a read held before its backfill
            if gate is not None:
                await gate.hold()
            return entry

        def get_sync(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
            entry: Entry | None = super().get_sync(key, tags)
            hook, self.on_miss_sync = self.on_miss_sync, None
            if entry is None and hook is not None:
                hook()
            gate = self._gate("get", (key, entry), False)
            if gate is not None:
                gate.hold_sync()
            return entry

        def _gate(self, op: str, args: tuple[Any, ...], before: bool) -> Gate | None:
            gates = getattr(self, "gates", ())
            return next((g for g in gates if g.takes(op, args, before)), None)

        async def _through(self, op: str, args: tuple[Any, ...], call: Any) -> Any:
            gate = self._gate(op, args, True)
            if gate is not None:
                await gate.hold()
            result = await call()
            gate = self._gate(op, args, False)
            if gate is not None:
                await gate.hold()
            return result

        def _through_sync(self, op: str, args: tuple[Any, ...], call: Any) -> Any:
            gate = self._gate(op, args, True)
            if gate is not None:
                gate.hold_sync()
            result = call()
            gate = self._gate(op, args, False)
            if gate is not None:
                gate.hold_sync()
            return result

        async def set(self, key: str, entry: Entry, lease: Any = None) -> bool:
            call = lambda: super(Gated, self).set(key, entry, lease)  # noqa: E731
            return await self._through("set", (key, entry), call)  # type: ignore[no-any-return]

        async def set_many(self, entries: dict[str, Entry]) -> None:
            call = lambda: super(Gated, self).set_many(entries)  # noqa: E731
            await self._through("set_many", (entries,), call)

        async def delete_many(self, keys: Sequence[str]) -> int:
            call = lambda: super(Gated, self).delete_many(keys)  # noqa: E731
            return await self._through("delete_many", (keys,), call)  # type: ignore[no-any-return]

        def set_sync(self, key: str, entry: Entry, lease: Any = None) -> bool:
            call = lambda: super(Gated, self).set_sync(key, entry, lease)  # noqa: E731
            return self._through_sync("set", (key, entry), call)  # type: ignore[no-any-return]

        def set_many_sync(self, entries: dict[str, Entry]) -> None:
            call = lambda: super(Gated, self).set_many_sync(entries)  # noqa: E731
            self._through_sync("set_many", (entries,), call)

        def delete_many_sync(self, keys: Sequence[str]) -> int:
            call = lambda: super(Gated, self).delete_many_sync(keys)  # noqa: E731
            return self._through_sync("delete_many", (keys,), call)  # type: ignore[no-any-return]

    return Gated


def writing(value: Any) -> Match:
    """A ``set`` of ``value`` (not a load's leased write of another value)."""
    return lambda args: args[1].value == value


def writing_many(value: Any) -> Match:
    return lambda args: any(e.value == value for e in args[0].values())


def deleting(args: tuple[Any, ...]) -> bool:
    return True


def reading(value: Any) -> Match:
    """A read below that found ``value``."""
    return lambda args: args[1] is not None and args[1].value == value


def redis_lower(url: str) -> Callable[[], Any]:
    return lambda: gated(sc.RedisTier)(url=url)


@pytest.fixture(params=["redis", "sqlite"])
def lower(request: pytest.FixtureRequest) -> Callable[[], Any]:
    """A factory of the gated lower tier (Redis or SQLite)."""
    if request.param == "redis":
        return redis_lower(request.getfixturevalue("redis_url"))
    url = request.getfixturevalue("sqlite_url")
    return lambda: gated(sc.SQLTier)(url=url)


def make(lower: Callable[[], Any], *gates: Gate) -> tuple[sc.Cache, Any, Any]:
    memory, below = sc.MemoryTier(), lower()
    below.gates = list(gates)
    cache = sc.Cache(tiers=[memory, below], namespace=f"wr-{uuid.uuid4().hex[:8]}", bus=False)
    return cache, memory, below


def another_process(lower: Callable[[], Any], cache: sc.Cache) -> sc.Cache:
    """A cache on the same lower storage and namespace, with no memory tier (another process)."""
    return sc.Cache(tiers=[lower()], namespace=cache.keys.namespace, bus=False)


def held(cache: sc.Cache, memory: Any, below: Any, key: str = "k") -> tuple[Any, Any]:
    """(memory's value, the lower tier's value) of ``key``; None for absent."""
    fkey = cache.keys.full_key(key)
    up, down = memory.get_sync(fkey), below.get_sync(fkey)
    return (up and up.value), (down and down.value)


def assert_alike(cache: sc.Cache, memory: Any, below: Any, key: str = "k") -> Any:
    """Memory holds the lower tier's value or nothing; returns the lower tier's value."""
    up, down = held(cache, memory, below, key)
    assert up is None or up == down, f"memory holds {up!r}, the tier below {down!r}"
    return down


# -- async: interleaving at awaits -------------------------------------------------------------
async def test_a_set_inside_another_sets_gap(lower: Callable[[], Any]) -> None:
    """Set A writes below, set B runs whole, then A writes memory: memory must not keep A."""
    gate = Gate("set", writing("A"))
    cache, memory, below = make(lower, gate)
    async with cache:
        first = asyncio.ensure_future(cache.set("k", "A"))
        await poll(gate.reached.is_set)
        await cache.set("k", "B")
        gate.open()
        await first
        assert assert_alike(cache, memory, below) == "B"
        assert await cache.get("k") == "B"


async def test_two_sets_crossing_in_their_gaps(lower: Callable[[], Any]) -> None:
    """Set A is held before its lower write, set B after its own; A then ends first, B last:
    B's value (overwritten below by A's) must not stay in memory."""
    a_gate, b_gate = Gate("set", writing("A"), before=True), Gate("set", writing("B"))
    cache, memory, below = make(lower, a_gate, b_gate)
    async with cache:
        first = asyncio.ensure_future(cache.set("k", "A"))
        await poll(a_gate.reached.is_set)
        second = asyncio.ensure_future(cache.set("k", "B"))
        await poll(b_gate.reached.is_set)
        a_gate.open()
        await first
        b_gate.open()
        await second
        assert assert_alike(cache, memory, below) == "A"
        assert await cache.get("k") == "A"


async def test_a_delete_inside_a_sets_gap(lower: Callable[[], Any]) -> None:
    """A delete runs whole between a set's lower write and its memory write: memory stays empty."""
    gate = Gate("set", writing("A"))
    cache, memory, below = make(lower, gate)
    async with cache:
        first = asyncio.ensure_future(cache.set("k", "A"))
        await poll(gate.reached.is_set)
        await cache.delete("k")
        gate.open()
        await first
        assert assert_alike(cache, memory, below) is None
        assert await cache.get("k") is None


async def test_a_delete_begun_before_a_set(lower: Callable[[], Any]) -> None:
    """A delete held before its lower delete, a set that then writes below and is held: the
    delete ends first, the set last; memory must not keep the deleted value."""
    deleting_gate = Gate("delete_many", deleting, before=True)
    set_gate = Gate("set", writing("A"))
    cache, memory, below = make(lower, deleting_gate, set_gate)
    async with cache:
        await cache.set("k", "old")
        remover = asyncio.ensure_future(cache.delete("k"))
        await poll(deleting_gate.reached.is_set)
        setter = asyncio.ensure_future(cache.set("k", "A"))
        await poll(set_gate.reached.is_set)
        deleting_gate.open()
        await remover
        set_gate.open()
        await setter
        assert assert_alike(cache, memory, below) is None
        assert await cache.get("k") is None


async def test_a_load_inside_a_sets_gap(lower: Callable[[], Any]) -> None:
    """A read-through misses below, then a set writes below and is held; the load leases,
    loads and writes every tier: the set's memory write must not cover the load's value
    (below, written after the set's) with its own."""
    gate = Gate("set", writing("A"))
    cache, memory, below = make(lower, gate)
    async with cache:
        setter: asyncio.Future[None] | None = None

        async def start_the_set() -> None:
            nonlocal setter
            setter = asyncio.ensure_future(cache.set("k", "A"))
            await poll(gate.reached.is_set)

        below.on_miss = start_the_set
        assert await cache.get_or_set("k", lambda: "loaded") == "loaded"
        gate.open()
        assert setter is not None
        await setter
        assert assert_alike(cache, memory, below) == "loaded"
        assert await cache.get("k") == "loaded"


async def test_a_reads_backfill_while_a_load_writes(redis_url: str) -> None:
    """A load misses below; another process then writes O there; the load leases after it.
    A read finds O below and is held before its backfill while the load writes L over O
    in every tier: the read's backfill must not put O back over L in memory. (Over SQLite
    the load's lower write is refused after another writer's, so Redis alone shows it.)"""
    lower = redis_lower(redis_url)
    gate = Gate("get", reading("O"))
    cache, memory, below = make(lower, gate)
    other = another_process(lower, cache)
    async with cache, other:

        async def other_writes() -> None:
            await other.set("k", "O")

        below.on_miss = other_writes
        reader: list[asyncio.Future[Any]] = []

        async def load() -> str:
            reader.append(asyncio.ensure_future(cache.get("k")))
            await poll(gate.reached.is_set)
            return "L"

        assert await cache.get_or_set("k", load) == "L"
        gate.open()
        assert await reader[0] == "O"  # it read before the load wrote: the old value is its answer
        assert assert_alike(cache, memory, below) == "L"
        assert await cache.get("k") == "L"


async def test_a_set_inside_a_set_manys_gap(lower: Callable[[], Any]) -> None:
    """``set_many`` writes below, a ``set`` of one of its keys runs whole, then the batch
    writes memory: memory must not keep the batch's value of that key."""
    gate = Gate("set_many", writing_many("A"))
    cache, memory, below = make(lower, gate)
    async with cache:
        batch = asyncio.ensure_future(cache.set_many({"k": "A", "j": "A"}))
        await poll(gate.reached.is_set)
        await cache.set("k", "B")
        gate.open()
        await batch
        assert assert_alike(cache, memory, below) == "B"
        assert assert_alike(cache, memory, below, "j") == "A"
        assert await cache.get_many(["k", "j"]) == {"k": "B", "j": "A"}


async def test_a_set_many_inside_a_sets_gap(lower: Callable[[], Any]) -> None:
    """A ``set`` writes below, ``set_many`` of the same key runs whole, then the set writes
    memory: memory must not keep the set's value."""
    gate = Gate("set", writing("A"))
    cache, memory, below = make(lower, gate)
    async with cache:
        first = asyncio.ensure_future(cache.set("k", "A"))
        await poll(gate.reached.is_set)
        await cache.set_many({"k": "B"})
        gate.open()
        await first
        assert assert_alike(cache, memory, below) == "B"
        assert await cache.get("k") == "B"


async def test_a_batch_delete_inside_a_set_manys_gap(lower: Callable[[], Any]) -> None:
    """``invalidate(keys=...)`` of the batch's keys runs whole between ``set_many``'s lower
    write and its memory write: memory keeps none of them."""
    gate = Gate("set_many", writing_many("A"))
    cache, memory, below = make(lower, gate)
    async with cache:
        batch = asyncio.ensure_future(cache.set_many({"k": "A", "j": "A"}))
        await poll(gate.reached.is_set)
        await cache.invalidate(keys=["k", "j"])
        gate.open()
        await batch
        assert assert_alike(cache, memory, below) is None
        assert assert_alike(cache, memory, below, "j") is None
        assert await cache.get_many(["k", "j"]) == {}


@pytest.mark.parametrize("batch", [False, True], ids=["set", "set_many"])
async def test_a_set_cancelled_between_its_tiers(lower: Callable[[], Any], batch: bool) -> None:
    """Set A (a ``set`` or a ``set_many``) claims, set B claims and writes below, A writes
    below (last) and is cancelled there, after B stored its value in memory: memory must not
    keep B's value."""
    operation, matcher = ("set_many", writing_many("A")) if batch else ("set", writing("A"))
    a_before, a_after = Gate(operation, matcher, before=True), Gate(operation, matcher)
    b_gate = Gate("set", writing("B"))
    cache, memory, below = make(lower, a_before, a_after, b_gate)
    async with cache:
        write_a = cache.set_many({"k": "A"}) if batch else cache.set("k", "A")
        first = asyncio.ensure_future(write_a)
        await poll(a_before.reached.is_set)
        second = asyncio.ensure_future(cache.set("k", "B"))
        await poll(b_gate.reached.is_set)
        a_before.open()
        await poll(a_after.reached.is_set)
        b_gate.open()
        await second
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert assert_alike(cache, memory, below) == "A"
        assert await cache.get("k") == "A"


# -- blocking: the same races across threads ---------------------------------------------------
def in_thread(call: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def finish(thread: threading.Thread) -> None:
    thread.join(TIMEOUT)
    assert not thread.is_alive()


def test_a_sync_set_inside_another_sets_gap(lower: Callable[[], Any]) -> None:
    """``test_a_set_inside_another_sets_gap`` with ``cache.sync`` in two threads."""
    gate = Gate("set", writing("A"))
    cache, memory, below = make(lower, gate)
    with cache.sync as sync:
        first = in_thread(lambda: sync.set("k", "A"))
        wait_until(gate.reached.is_set)
        sync.set("k", "B")
        gate.open()
        finish(first)
        assert assert_alike(cache, memory, below) == "B"
        assert sync.get("k") == "B"


def test_two_sync_sets_crossing_in_their_gaps(lower: Callable[[], Any]) -> None:
    """``test_two_sets_crossing_in_their_gaps`` with ``cache.sync`` in two threads."""
    a_gate, b_gate = Gate("set", writing("A"), before=True), Gate("set", writing("B"))
    cache, memory, below = make(lower, a_gate, b_gate)
    with cache.sync as sync:
        first = in_thread(lambda: sync.set("k", "A"))
        wait_until(a_gate.reached.is_set)
        second = in_thread(lambda: sync.set("k", "B"))
        wait_until(b_gate.reached.is_set)
        a_gate.open()
        finish(first)
        b_gate.open()
        finish(second)
        assert assert_alike(cache, memory, below) == "A"
        assert sync.get("k") == "A"


def test_a_sync_delete_inside_a_sets_gap(lower: Callable[[], Any]) -> None:
    """``test_a_delete_inside_a_sets_gap`` with ``cache.sync`` in two threads."""
    gate = Gate("set", writing("A"))
    cache, memory, below = make(lower, gate)
    with cache.sync as sync:
        first = in_thread(lambda: sync.set("k", "A"))
        wait_until(gate.reached.is_set)
        sync.delete("k")
        gate.open()
        finish(first)
        assert assert_alike(cache, memory, below) is None
        assert sync.get("k") is None


def test_a_sync_delete_begun_before_a_set(lower: Callable[[], Any]) -> None:
    """``test_a_delete_begun_before_a_set`` with ``cache.sync`` in three threads."""
    deleting_gate = Gate("delete_many", deleting, before=True)
    set_gate = Gate("set", writing("A"))
    cache, memory, below = make(lower, deleting_gate, set_gate)
    with cache.sync as sync:
        sync.set("k", "old")
        remover = in_thread(lambda: sync.delete("k"))
        wait_until(deleting_gate.reached.is_set)
        setter = in_thread(lambda: sync.set("k", "A"))
        wait_until(set_gate.reached.is_set)
        deleting_gate.open()
        finish(remover)
        set_gate.open()
        finish(setter)
        assert assert_alike(cache, memory, below) is None
        assert sync.get("k") is None


def test_a_sync_load_inside_a_sets_gap(lower: Callable[[], Any]) -> None:
    """``test_a_load_inside_a_sets_gap`` with ``cache.sync``: the load runs whole in one
    thread while a blocking set is held between its lower and memory writes in another."""
    gate = Gate("set", writing("A"))
    cache, memory, below = make(lower, gate)
    with cache.sync as sync:
        setters: list[threading.Thread] = []

        def start_the_set() -> None:
            setters.append(in_thread(lambda: sync.set("k", "A")))
            wait_until(gate.reached.is_set)

        below.on_miss_sync = start_the_set
        assert sync.get_or_set("k", lambda: "loaded") == "loaded"
        gate.open()
        finish(setters[0])
        assert assert_alike(cache, memory, below) == "loaded"
        assert sync.get("k") == "loaded"


def test_a_sync_batch_delete_inside_a_set_manys_gap(lower: Callable[[], Any]) -> None:
    """``test_a_batch_delete_inside_a_set_manys_gap`` with ``cache.sync`` in two threads."""
    gate = Gate("set_many", writing_many("A"))
    cache, memory, below = make(lower, gate)
    with cache.sync as sync:
        batch = in_thread(lambda: sync.set_many({"k": "A", "j": "A"}))
        wait_until(gate.reached.is_set)
        sync.invalidate(keys=["k", "j"])
        gate.open()
        finish(batch)
        assert assert_alike(cache, memory, below) is None
        assert assert_alike(cache, memory, below, "j") is None
        assert sync.get_many(["k", "j"]) == {}


def test_a_sync_reads_backfill_while_a_load_writes(redis_url: str) -> None:
    """``test_a_reads_backfill_while_a_load_writes`` with ``cache.sync``, the read in a thread."""
    lower = redis_lower(redis_url)
    gate = Gate("get", reading("O"))
    cache, memory, below = make(lower, gate)
    other = another_process(lower, cache)
    with cache.sync as sync, other.sync as other_sync:
        below.on_miss_sync = lambda: other_sync.set("k", "O")
        answers: list[Any] = []
        readers: list[threading.Thread] = []

        def load() -> str:
            readers.append(in_thread(lambda: answers.append(sync.get("k"))))
            wait_until(gate.reached.is_set)
            return "L"

        assert sync.get_or_set("k", load) == "L"
        gate.open()
        finish(readers[0])
        assert answers == ["O"]
        assert assert_alike(cache, memory, below) == "L"
        assert sync.get("k") == "L"


def test_a_sync_set_inside_a_set_manys_gap(lower: Callable[[], Any]) -> None:
    """``test_a_set_inside_a_set_manys_gap`` with ``cache.sync`` in two threads."""
    gate = Gate("set_many", writing_many("A"))
    cache, memory, below = make(lower, gate)
    with cache.sync as sync:
        batch = in_thread(lambda: sync.set_many({"k": "A", "j": "A"}))
        wait_until(gate.reached.is_set)
        sync.set("k", "B")
        gate.open()
        finish(batch)
        assert assert_alike(cache, memory, below) == "B"
        assert assert_alike(cache, memory, below, "j") == "A"
        assert sync.get_many(["k", "j"]) == {"k": "B", "j": "A"}

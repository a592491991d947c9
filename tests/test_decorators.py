"""``@cache.cached`` on sync, async functions and methods; the memo fast path stays coherent."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, ClassVar

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stratacache as sc
from stratacache.core.clock import ManualClock


def _cache(clock: ManualClock | None = None, maxsize: int = 100) -> sc.Cache:
    return sc.Cache(tiers=[sc.MemoryTier(maxsize=maxsize)], namespace="d", clock=clock)


def test_sync_function_is_called_once_per_arguments() -> None:
    """Repeated calls with the same arguments hit; different arguments load."""
    cache = _cache()
    calls: list[int] = []

    @cache.cached(ttl=60)
    def square(x: int) -> int:
        calls.append(x)
        return x * x

    assert [square(2), square(2), square(3), square(x=2)] == [4, 4, 9, 4]
    assert calls == [2, 3]
    assert square.stats.as_dict()["hits"] == 2  # type: ignore[attr-defined]


async def test_async_function_is_called_once() -> None:
    """An async function's result is cached; its coroutine is not."""
    cache = _cache()
    calls = []

    @cache.cached(ttl=60, key="user:{user_id}")
    async def get_user(user_id: int) -> dict[str, int]:
        calls.append(user_id)
        return {"id": user_id}

    async with cache:
        assert await get_user(1) == {"id": 1}
        assert await get_user(1) == {"id": 1}
        assert await cache.get("user:1") == {"id": 1}
    assert calls == [1]


def test_methods_are_cached_per_arguments() -> None:
    """A decorated method with ignore=("self",) caches by its other arguments only."""
    cache = _cache()
    calls = []

    class Repo:
        @cache.cached(ttl=60, ignore=("self",))
        def find(self, item_id: int) -> str:
            calls.append(item_id)
            return f"item{item_id}"

    repo = Repo()
    assert repo.find(1) == repo.find(1) == "item1"
    assert Repo().find(1) == "item1"  # same automatic key from another instance (self ignored)
    assert calls == [1]


def test_ttl_expiry_reaches_fast_path() -> None:
    """After the TTL the memoized entry is not served; the function runs again."""
    clock = ManualClock()
    cache = _cache(clock)
    calls = []

    @cache.cached(ttl=10)
    def f(x: int) -> int:
        calls.append(x)
        return len(calls)

    assert f(1) == 1 and f(1) == 1
    clock.advance(11)
    assert f(1) == 2


def test_invalidation_by_key_tag_and_prefix_reaches_fast_path() -> None:
    """fn.invalidate, tag and prefix invalidation all stop the memo from serving."""
    cache = _cache()
    calls = []

    @cache.cached(ttl=60, key="acct:{a}", tags=["org:{a}"])
    def account(a: int) -> int:
        calls.append(a)
        return len(calls)

    first = account(1)
    assert account(1) == first
    account.invalidate(1)  # type: ignore[attr-defined]
    second = account(1)
    assert second != first
    cache.sync.invalidate(tags=["org:1"])
    third = account(1)
    assert third != second
    cache.sync.invalidate(prefix="acct:")
    assert account(1) != third
    assert account(1) == account(1)


def test_eviction_reaches_fast_path() -> None:
    """An entry evicted from memory by LRU is not served from the memo."""
    cache = sc.Cache(tiers=[sc.MemoryTier(maxsize=2, policy="lru")], namespace="d")
    calls = []

    @cache.cached(ttl=60)
    def f(x: int) -> int:
        calls.append(x)
        return x

    f(1), f(2), f(3)  # 1 is evicted
    f(1)
    assert calls == [1, 2, 3, 1]


def test_unhashable_arguments_use_the_slow_path() -> None:
    """Lists and dicts as arguments still cache, keyed by their stable digest."""
    cache = _cache()
    calls = []

    @cache.cached(ttl=60)
    def total(items: list[int], opts: dict[str, Any]) -> int:
        calls.append(1)
        return sum(items)

    assert total([1, 2], {"a": 1}) == total([1, 2], {"a": 1}) == 3
    assert len(calls) == 1


def test_unserializable_argument_is_a_clear_error() -> None:
    """An argument that cannot make a stable key raises CacheKeyError naming the function."""
    cache = _cache()

    @cache.cached(ttl=60)
    def f(thing: object) -> int:
        return 1

    with pytest.raises(sc.CacheKeyError, match="f"):
        f(object())


def test_unserializable_result_raises_and_is_not_cached() -> None:
    """A result that cannot be encoded raises SerializationError at the call."""
    cache = _cache()

    @cache.cached(ttl=60)
    def f() -> object:
        return object()

    with pytest.raises(sc.SerializationError):
        f()


def test_template_with_unknown_argument_fails_at_decoration() -> None:
    """key='user:{uid}' on a function without uid fails when decorating."""
    cache = _cache()
    with pytest.raises(sc.CacheKeyError):

        @cache.cached(key="user:{uid}")
        def f(user_id: int) -> None: ...


def test_refresh_recomputes_and_stores() -> None:
    """fn.refresh runs the function now and the next call serves the new value."""
    cache = _cache()
    counter = iter(range(100))

    @cache.cached(ttl=60)
    def f() -> int:
        return next(counter)

    assert f() == 0
    assert f.refresh() == 1  # type: ignore[attr-defined]
    assert f() == 1


def test_cache_none_choice() -> None:
    """cache_none=False makes a None result run again on the next call."""
    cache = _cache()
    calls = []

    @cache.cached(ttl=60, cache_none=False)
    def f() -> None:
        calls.append(1)

    f(), f()
    assert len(calls) == 2


def test_kwargs_and_positional_share_the_entry() -> None:
    """f(1) and f(x=1) resolve to the same stored entry."""
    cache = _cache()
    calls = []

    @cache.cached(ttl=60)
    def f(x: int) -> int:
        calls.append(x)
        return x

    f(1), f(x=1), f(x=1)
    assert calls == [1]


def test_key_helper_returns_full_key() -> None:
    """fn.key(...) gives the namespaced key a call is stored under."""
    cache = _cache()

    @cache.cached(key="k:{x}")
    def f(x: int) -> int:
        return x

    assert f.key(5) == "d:k:5"  # type: ignore[attr-defined]


# -- the whole call is the key; "the same call" is one rule for the memo and every tier --


def test_generators_are_refused_at_decoration() -> None:
    """Generator and async generator functions raise ConfigError when decorated."""
    cache = _cache()

    def numbers() -> Iterator[int]:
        yield 1

    async def anumbers() -> AsyncIterator[int]:
        yield 1

    class Source:
        def rows(self) -> Iterator[int]:
            yield 1

    for fn in (numbers, anumbers, functools.partial(numbers), Source().rows):
        with pytest.raises(sc.ConfigError, match="generator"):
            cache.cached(ttl=60)(fn)


def test_methods_key_the_instance() -> None:
    """self is part of the key: __cache_key__ or a template keys it; a plain one is refused."""
    cache = _cache()

    class Tariff:
        def __init__(self, tariff_id: str, rate: int) -> None:
            self.id, self.rate = tariff_id, rate

        def __cache_key__(self) -> str:
            return self.id

        @cache.cached(ttl=60)
        def charge(self, units: int) -> int:
            return self.rate * units

        @cache.cached(ttl=60, key="tariff:{self.id}:{units}")
        def charge_t(self, units: int) -> int:
            return self.rate * units

    class Bare:
        @cache.cached(ttl=60)
        def f(self, x: int) -> int:
            return x

    assert Tariff("a", 2).charge(10) == 20 and Tariff("b", 3).charge(10) == 30
    assert Tariff("a", 2).charge_t(10) == 20 and Tariff("b", 3).charge_t(10) == 30
    with pytest.raises(sc.CacheKeyError, match="__cache_key__"):
        Bare().f(1)
    with pytest.raises(sc.ConfigError, match="tuple of parameter names"):
        cache.cached(ttl=60, ignore="self")(Bare.f)


_CLASS_CACHE = sc.Cache(tiers=[sc.MemoryTier()], namespace="classes", default_ttl=60)


class _Base:
    rate = 1

    @classmethod
    @_CLASS_CACHE.cached(ttl=60)
    def price(cls, units: int) -> int:
        return cls.rate * units


class _Dear(_Base):
    rate = 5


def test_classmethods_key_the_class_by_qualified_name() -> None:
    """Two classes sharing a classmethod get their own entries."""
    assert _Base.price(2) == 2 and _Dear.price(2) == 10 and _Base.price(2) == 2


@pytest.mark.parametrize("flavor", ["classmethod", "dataclass self", "class argument"])
def test_classes_made_inside_a_function_are_refused(flavor: str) -> None:
    """A factory's classes share one name: keying by it would mix their results, so refuse."""
    cache = _cache()

    def make(rate: int) -> Any:
        @dataclasses.dataclass
        class Tariff:
            units: int
            RATE: ClassVar[int] = rate

            def charge(self) -> int:
                return self.units * self.RATE

            @classmethod
            def r(cls) -> int:
                return cls.RATE

        return Tariff

    charge = cache.cached(ttl=60)(lambda t: t.charge())
    kind = cache.cached(ttl=60, name="kind")(lambda cls: cls.RATE)
    rate = cache.cached(ttl=60, name="rate")(lambda cls: cls.r())
    two, three = make(2), make(3)
    with pytest.raises(sc.CacheKeyError, match="inside a function"):
        if flavor == "dataclass self":
            charge(two(5))
        elif flavor == "class argument":
            kind(two)
        else:
            rate(three)


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_equal_arguments_are_one_call_in_memo_and_key(flavor: str) -> None:
    """f(1), f(True), f(1.0), f(Decimal(1)) are one call; the key agrees with the memo."""
    cache = _cache()
    calls: list[object] = []

    def body(x: object) -> str:
        calls.append(x)
        return repr(x)

    async def abody(x: object) -> str:
        return body(x)

    fn: Any = cache.cached(ttl=60)(body if flavor == "sync" else abody)

    async def call(x: object) -> Any:
        return fn(x) if flavor == "sync" else await fn(x)

    async with cache:
        results = [await call(x) for x in (1, True, 1.0, Decimal(1), 1, True)]
        assert results == ["1"] * 6 and calls == [1]
        assert len({fn.key(x) for x in (1, True, 1.0, Decimal(1))}) == 1
        assert await cache.get(cache.relative_key(fn.key(True))) == "1"


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_template_keys_tell_equal_values_of_other_types_apart(flavor: str) -> None:
    """With key="v:{x}", f(1) and f(True) render two keys, and the memo never mixes them."""
    cache = _cache()

    def body(x: object) -> str:
        return repr(x)

    async def abody(x: object) -> str:
        return repr(x)

    fn: Any = cache.cached(ttl=60, key="v:{x}")(body if flavor == "sync" else abody)

    async def call(x: object) -> Any:
        return fn(x) if flavor == "sync" else await fn(x)

    async with cache:
        for _ in range(2):
            assert [await call(x) for x in (1, True, 1.0, -0.0, 0.0)] == [
                "1",
                "True",
                "1.0",
                "-0.0",
                "0.0",
            ]
        assert await cache.get("v:True") == "True" and await cache.get("v:1") == "1"


def test_closures_and_unwrapped_wrappers_keep_their_own_results() -> None:
    """Closures of one factory and wrappers without functools.wraps never share results."""
    cache = _cache()

    def make_scaler(factor: int) -> Callable[[int], int]:
        @cache.cached(ttl=60)
        def scale(x: int) -> int:
            return x * factor

        return scale

    def logged(fn: Callable[[float], float]) -> Callable[[float], float]:
        def inner(*args: float) -> float:
            return fn(*args)

        return inner

    def celsius(x: float) -> float:
        return x

    def fahrenheit(x: float) -> float:
        return x * 9 / 5 + 32

    assert [make_scaler(f)(7) for f in (2, 3, 2, 5)] == [14, 21, 14, 35]
    c, f = cache.cached(ttl=60)(logged(celsius)), cache.cached(ttl=60)(logged(fahrenheit))
    assert (c(100), f(100)) == (100, 212)


def test_indistinguishable_functions_on_one_key_space_are_refused() -> None:
    """Two lambdas, or closures over different unkeyable objects, need name= or key=."""
    cache = _cache()
    cache.cached(ttl=60)(lambda x: x * 2)
    with pytest.raises(sc.ConfigError, match="name="):
        cache.cached(ttl=60)(lambda x: x * 3)

    def handler(db: object) -> Callable[[int], int]:
        def query(x: int) -> int:
            return hash((db, x))

        return query

    first, second = object(), object()
    cache.cached(ttl=60)(handler(first))
    cache.cached(ttl=60)(handler(first))  # the same function again is fine
    with pytest.raises(sc.ConfigError, match="no stable representation"):
        cache.cached(ttl=60)(handler(second))
    named = cache.cached(ttl=60, name="query-second")(handler(second))
    assert named(1) == named(1)


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_long_template_keys_are_shortened_not_refused(flavor: str) -> None:
    """A template filled with a long argument works; fn.invalidate reaches the shortened key."""
    cache = _cache()
    calls: list[str] = []

    def body(text: str) -> int:
        calls.append(text)
        return len(text)

    async def abody(text: str) -> int:
        return body(text)

    fn: Any = cache.cached(ttl=60, key="doc:{text}")(body if flavor == "sync" else abody)

    async def call(x: str) -> Any:
        return fn(x) if flavor == "sync" else await fn(x)

    async def invalidate(x: str) -> None:
        if flavor == "sync":
            fn.invalidate(x)
        else:
            await fn.invalidate(x)

    long_a, long_b = "a" * 5000, "a" * 4999 + "b"
    async with cache:
        assert [await call(long_a), await call(long_b), await call(long_a)] == [5000] * 3
        assert len(calls) == 2 and len(cache.relative_key(fn.key(long_a))) <= cache.max_key_length
        await invalidate(long_a)
        assert await call(long_a) == 5000 and len(calls) == 3


# -- real processes, other hash seeds, every shared tier --

_PROC = """
import asyncio, collections, datetime, json, sys, uuid
from decimal import Decimal
from fractions import Fraction
import stratacache as sc

storage, url, flavor = sys.argv[1:4]
texts = json.loads(sys.stdin.read())
names = {"datetime": datetime, "Decimal": Decimal, "Fraction": Fraction, "UUID": uuid.UUID}
values = [eval(t, dict(names)) for t in texts]
tier = sc.RedisTier(url=url) if storage == "redis" else sc.SQLTier(url, sweep_interval=0)
cache = sc.Cache(tiers=[sc.MemoryTier(), tier], namespace="xproc", default_ttl=60)

if flavor == "sync":
    @cache.cached(ttl=60, name="probe")
    def probe(value):
        return "worker"
    got = [probe(v) for v in values]
    cache.sync.close()
else:
    @cache.cached(ttl=60, name="probe")
    async def probe(value):
        return "worker"
    async def main():
        async with cache:
            return [await probe(v) for v in values]
    got = asyncio.run(main())
print(json.dumps(got))
"""

_BATCH = [
    ({"city": "Oslo", "kind": "flat"}, {"kind": "flat", "city": "Oslo"}),
    (
        frozenset({"alpha", "beta", "gamma", "delta"}),
        frozenset({"delta", "gamma", "beta", "alpha"}),
    ),
    (frozenset({1, 9}), frozenset({9, 1})),
    (7, 7.0),
    (True, 1.0 + 0.0 * 3),
    (Decimal("2.50"), 2.5),
    (Fraction(1, 3), Fraction(2, 6)),
    ((1, ("x", {"a": [1, 2]})), (1.0, ("x", {"a": [1, 2]}))),
    ({"z": {1, 2}, "a": None}, {"a": None, "z": {2, 1}}),
    (
        dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc),
        dt.datetime(2024, 5, 1, 13, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    ),
    (b"bytes", b"bytes"),
    ("text", "text"),
    (None, None),
    (uuid.UUID(int=5), uuid.UUID(int=5)),
]


_SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.mark.parametrize("flavor", ["sync", "async"])
@pytest.mark.parametrize("storage", ["redis", "sqlite", "postgres"])
def test_equal_calls_share_entries_across_processes(
    storage: str, flavor: str, request: pytest.FixtureRequest
) -> None:
    """Another OS process with another hash seed reads this one's results for equal arguments."""
    url = request.getfixturevalue(f"{storage}_url" if storage != "redis" else "redis_url")
    tier: Any = sc.RedisTier(url=url) if storage == "redis" else sc.SQLTier(url, sweep_interval=0)
    cache = sc.Cache(tiers=[sc.MemoryTier(), tier], namespace="xproc", default_ttl=60)

    @cache.cached(ttl=60, name="probe")
    async def probe(value: object) -> str:
        return f"parent:{value!r}"

    async def fill() -> list[str]:
        async with cache:
            return [await probe(left) for left, _ in _BATCH]

    expected = asyncio.run(fill())
    seed = "7" if os.environ.get("PYTHONHASHSEED") != "7" else "8"
    result = subprocess.run(
        [sys.executable, "-c", _PROC, storage, url, flavor],
        input=json.dumps([repr(right) for _, right in _BATCH]),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": _SRC},
        timeout=120,
        check=True,
    )
    assert json.loads(result.stdout) == expected


def test_factories_of_cached_functions_calling_each_other_can_run_twice() -> None:
    """A closure over another cached function is identified by that function's key space."""
    cache = _cache()

    def build(rate: int) -> Callable[[int], int]:
        @cache.cached(ttl=60)
        def base(x: int) -> int:
            return x * rate

        @cache.cached(ttl=60)
        def total(x: int) -> int:
            return base(x) + 1

        return total

    assert [build(2)(5), build(3)(5), build(2)(5)] == [11, 16, 11]


def test_wrappers_of_different_lambdas_keep_their_own_results() -> None:
    """Closures over two different lambdas (same name, other code) never share a key space."""
    cache = _cache()

    def logged(fn: Callable[[int], int]) -> Callable[[int], int]:
        def inner(x: int) -> int:
            return fn(x)

        return inner

    double = cache.cached(ttl=60)(logged(lambda x: x * 2))
    triple = cache.cached(ttl=60)(logged(lambda x: x * 3))
    again = cache.cached(ttl=60)(logged(lambda x: x * 2))
    assert (double(5), triple(5), again(5)) == (10, 15, 10)


@pytest.mark.parametrize(
    ("template", "calls", "expected"),
    [
        ("const", [(), ()], ["()", "()"]),
        ("a:{a}", [(1,), (True,), (1,)], ["(1,)", "(True,)", "(1,)"]),
        ("ab:{a}:{b}", [(1, "x"), (1.0, "x"), (1, "x")], ["(1, 'x')", "(1.0, 'x')", "(1, 'x')"]),
        (
            "abc:{a}:{b}:{c}",
            [(1, 2, 3), (1, 2, True), (1, 2, 3)],
            ["(1, 2, 3)", "(1, 2, True)", "(1, 2, 3)"],
        ),
    ],
)
def test_template_memo_answers_only_same_typed_calls(
    template: str, calls: list[tuple[Any, ...]], expected: list[str]
) -> None:
    """Whatever the arity, a memo hit for a template key needs the same argument types."""
    cache = _cache()

    bodies: list[Callable[..., str]] = [
        lambda: repr(()),
        lambda a: repr((a,)),
        lambda a, b: repr((a, b)),
        lambda a, b, c: repr((a, b, c)),
    ]
    show = cache.cached(ttl=60, key=template)(bodies[template.count("{")])
    assert [show(*c) for c in calls] == expected
    assert [show(*c) for c in calls] == expected


_atoms = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False),
    st.text(max_size=6),
    st.decimals(allow_nan=False),
    st.fractions(),
)
_args = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=4), inner, max_size=3),
        st.frozensets(st.one_of(st.integers(), st.text(max_size=4)), max_size=4),
    ),
    max_leaves=8,
)


def _reordered(value: Any) -> Any:
    """An equal value built in another order (ints as floats where exact)."""
    if isinstance(value, dict):
        return {k: _reordered(v) for k, v in reversed(list(value.items()))}
    if isinstance(value, frozenset):
        return frozenset(reversed(list(value)))
    if isinstance(value, tuple):
        return tuple(_reordered(v) for v in value)
    if type(value) is int and abs(value) < 2**53:
        return float(value)
    return value


@settings(max_examples=60, deadline=None)
@given(st.lists(_args, min_size=1, max_size=8))
def test_memo_and_key_agree_on_equal_arguments(values: list[Any]) -> None:
    """Calling with a value then an equal one loads once, from the memo or the shared key."""
    cache = _cache(maxsize=1000)
    loads: list[Any] = []

    @cache.cached(ttl=60)
    def load(value: Any) -> int:
        loads.append(value)
        return len(loads)

    for value in values:
        twin = _reordered(value)
        before = len(loads)
        first = load(value)
        assert load(twin) == first and load(value) == first
        assert load.key(value) == load.key(twin)  # type: ignore[attr-defined]
        assert len(loads) - before <= 1


@dataclasses.dataclass
class _Rate:
    rate: int


def test_template_key_sees_a_changed_attribute() -> None:
    """A template over ``self.id``: after the attribute changes, the call is keyed anew."""
    cache = _cache()

    class Tariff:
        def __init__(self) -> None:
            self.id = "basic"

        @cache.cached(ttl=60, key="tariff:{self.id}:{units}")
        def charge(self, units: int) -> str:
            return f"{self.id}:{units}"

    t = Tariff()
    assert t.charge(5) == t.charge(5) == "basic:5"
    t.id = "premium"
    assert t.charge(5) == "premium:5"


def test_a_mutated_dataclass_argument_is_keyed_anew() -> None:
    """A mutable dataclass is keyed by its fields at each call, never remembered by identity."""
    cache = _cache()
    rate = _Rate(2)
    cost = cache.cached(ttl=60, name="cost")(lambda r: r.rate * 10)
    assert cost(rate) == cost(rate) == 20
    rate.rate = 3
    assert cost(rate) == 30


def test_equal_datetimes_across_a_dst_fold_are_two_calls() -> None:
    """01:30 before and after the New York fall-back are equal in Python but two instants."""
    from zoneinfo import ZoneInfo

    cache = _cache()
    first = dt.datetime(2024, 11, 3, 1, 30, tzinfo=ZoneInfo("America/New_York"))
    second = first.replace(fold=1)
    stamp = cache.cached(ttl=60, name="stamp")(lambda d: d.timestamp())
    assert stamp(first) == first.timestamp()
    assert stamp(second) == second.timestamp() != first.timestamp()
    assert stamp(first) == first.timestamp()


async def test_close_empties_the_memory_tier_the_memo_answers_from(redis_url: str) -> None:
    """With a bus, close() empties L1: nobody hears invalidations until the restart."""
    cache = sc.Cache(
        tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)], namespace=uuid.uuid4().hex[:10]
    )
    source = {"v": "old"}

    @cache.cached(ttl=300, key="k:{i}")
    async def load(i: int) -> str:
        return source["v"]

    async with cache:
        assert await load(1) == await load(1) == "old"
        assert len(load._memo) == 1  # type: ignore[attr-defined]
    assert len(load._memo) == 0  # type: ignore[attr-defined]
    source["v"] = "new"
    other = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace=cache.namespace, bus=False)
    async with other:
        await other.delete("k:1")  # the message nobody in ``cache`` heard
    async with cache:
        assert await load(1) == "new"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_answer_from_the_parents_memo(redis_url: str) -> None:
    """After fork, the child's memo and memory tier are empty: it reads the shared tier."""
    cache = sc.Cache(
        tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)], namespace=uuid.uuid4().hex[:10]
    )
    source = {"v": "old"}

    @cache.cached(ttl=300, key="k:{i}")
    def load(i: int) -> str:
        return source["v"]

    assert load(1) == load(1) == "old"
    cache.sync.set("k:1", "shared")  # what another process wrote meanwhile
    load._memo.clear()  # type: ignore[attr-defined]
    assert load(1) == "shared" and len(load._memo) == 1  # type: ignore[attr-defined]
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 when its memo and L1 start empty
        empty = len(load._memo) == 0 and len(cache.tiers.top) == 0  # type: ignore[attr-defined]
        os._exit(0 if empty and load(1) == "shared" else 1)
    _, status = os.waitpid(pid, 0)
    cache.sync.close()
    assert os.waitstatus_to_exitcode(status) == 0


class _Query(pydantic.BaseModel):
    text: str
    _page: int = 0


def test_pydantic_private_attributes_are_part_of_the_key() -> None:
    """Models that differ only in a private attribute compare unequal, so they key apart."""
    one, two = _Query(text="q"), _Query(text="q")
    two._page = 5
    assert one != two
    cache = _cache()
    page = cache.cached(ttl=60, name="page")(lambda q: q._page)
    assert page(one) == 0 and page(two) == 5 and page(one) == 0

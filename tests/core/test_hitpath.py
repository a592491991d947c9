"""The compiled hit path: the decorated function's own parameters, one memo slot per call."""

from __future__ import annotations

import dataclasses
import gc
from typing import Any

import pytest

import stratacache as sc
from stratacache.core.hitpath import compile_hit_path, positional_parameters
from stratacache.core.memo import call_key


@dataclasses.dataclass(frozen=True)
class Point:
    """A frozen value: memoized by equality, held weakly."""

    x: int


def _memory_cache() -> sc.Cache:
    return sc.Cache(tiers=[sc.MemoryTier(maxsize=100)], bus=False, namespace="hit")


def _compile(fn: Any) -> Any:
    wrapper, positional = compile_hit_path(
        fn, lookup={}.get, now=lambda: 0.0, fstats=None, touch=None,
        slow=lambda ck, args, kwargs: (ck, args, kwargs), is_async=False,
    )  # fmt: skip
    assert positional
    return wrapper


def test_only_all_positional_functions_are_compiled() -> None:
    """``*args``, ``**kwargs`` and keyword-only parameters keep the generic wrapper."""

    def plain(a: int, b: int = 2) -> int:
        return a + b

    def star(*a: int) -> int:
        return 0

    def kw(**k: int) -> int:
        return 0

    def kwonly(a: int, *, b: int) -> int:
        return a + b

    def clash(_sc_ck: int) -> int:
        return _sc_ck

    def shadow(TypeError: int) -> int:
        return TypeError

    def mutable_default(a: int, seen: list[int] = []) -> int:  # noqa: B006
        return a

    assert positional_parameters(plain) is not None
    odd = (star, kw, kwonly, clash, shadow, mutable_default)
    assert [positional_parameters(f) for f in odd] == [None] * len(odd)


def test_a_callable_object_gets_the_generic_shape() -> None:
    """An instance with ``__call__`` (no ``__name__``) is wrapped generically."""

    class Double:
        def __call__(self, x: int) -> int:
            return 2 * x

    wrapper, positional = compile_hit_path(
        Double(), lookup={}.get, now=lambda: 0.0, fstats=None, touch=None,
        slow=lambda ck, args, kwargs: args, is_async=False,
    )  # fmt: skip
    assert not positional and wrapper(3) == (3,)


def test_the_miss_gets_bound_arguments_with_defaults() -> None:
    """Keywords and defaults are bound before the body runs: one key tuple per call."""

    def f(a: int, b: int = 2) -> int:
        return a + b

    wrapper = _compile(f)
    assert wrapper(1) == ((1, 2), (1, 2), {})
    assert wrapper(b=2, a=1) == ((1, 2), (1, 2), {})


def test_a_bad_call_names_the_function() -> None:
    """A wrong call raises the TypeError the function itself would, with its name."""

    def report(day: str, /, limit: int = 3) -> list[str]:
        return [day] * limit

    wrapper = _compile(report)
    with pytest.raises(TypeError, match="report"):
        wrapper()
    with pytest.raises(TypeError, match="positional-only"):
        wrapper(day="mon")


def test_default_objects_are_the_functions_own() -> None:
    """A default is passed as the very object the function declares, never re-created."""
    marker = object()

    def f(a: object = marker) -> int:
        return 0

    assert _compile(f)()[1][0] is marker


def test_equal_calls_share_one_memo_slot_and_count_as_hits() -> None:
    """``f(1)``, ``f(a=1)`` and ``f(1, 2)`` (default ``b=2``) are one memoized call."""
    cache = _memory_cache()
    calls: list[tuple[int, int]] = []

    @cache.cached(ttl=60)
    def f(a: int, b: int = 2) -> int:
        calls.append((a, b))
        return a + b

    assert [f(1), f(a=1), f(1, 2), f(1, b=2)] == [3, 3, 3, 3]
    assert calls == [(1, 2)]
    assert f.stats.fast_hits == 3
    assert len(f._memo) == 1  # type: ignore[attr-defined]


def test_invalidate_and_refresh_reach_the_compiled_memo() -> None:
    """Invalidating or refreshing a call given in another form still reaches its slot."""
    cache = _memory_cache()
    value = [1]

    @cache.cached(ttl=60)
    def f(a: int, b: int = 2) -> int:
        return value[0]

    assert f(1) == 1
    value[0] = 2
    f.invalidate(a=1, b=2)
    assert f(1) == 2
    value[0] = 3
    assert f.refresh(1, 2) == 3
    assert f(a=1) == 3


def test_methods_bind_self() -> None:
    """A compiled method takes ``self`` as the function does; instances are told apart."""
    cache = _memory_cache()

    class Meter:
        def __init__(self, rate: int) -> None:
            self.rate = rate

        def __cache_key__(self) -> int:
            return self.rate

        @cache.cached(ttl=60)
        def cost(self, units: int) -> int:
            return self.rate * units

    assert (Meter(2).cost(3), Meter(5).cost(3), Meter(2).cost(units=3)) == (6, 15, 6)


def test_other_functions_get_the_generic_shape() -> None:
    """``*args``/``**kwargs`` functions are keyed as ``core.memo.call_key`` keys the call."""

    def f(a: int, *rest: int, **named: int) -> int:
        return a

    wrapper, positional = compile_hit_path(
        f, lookup={}.get, now=lambda: 0.0, fstats=None, touch=None,
        slow=lambda ck, args, kwargs: (ck, args, kwargs), is_async=False,
    )  # fmt: skip
    assert not positional
    assert wrapper(1, 2) == ((1, 2), (1, 2), {})
    assert wrapper(1, b=3) == (call_key((1,), {"b": 3}), (1,), {"b": 3})
    assert wrapper([1]) == (None, ([1],), {})  # unhashable: no memo key


async def test_async_functions_are_compiled_too() -> None:
    """An ``async def`` gets an async compiled wrapper with the same behaviour."""
    cache = _memory_cache()
    calls: list[int] = []

    @cache.cached(ttl=60)
    async def f(a: int, b: int = 2) -> int:
        calls.append(a)
        return a + b

    async with cache:
        assert [await f(1), await f(a=1), await f(1, 2)] == [3, 3, 3]
    assert calls == [1]
    assert f.__code__.co_name == "f"


def test_one_parameter_memos_are_keyed_by_the_bare_argument() -> None:
    """A one-parameter function's memo key is the argument itself, not a 1-tuple."""
    cache = _memory_cache()

    @cache.cached(ttl=60)
    def f(x: object) -> str:
        return repr(x)

    assert (f(1), f(x=1), f((1, 2)), f((1, 2))) == ("1", "1", "(1, 2)", "(1, 2)")
    assert set(f._memo.data) == {1, (1, 2)}  # type: ignore[attr-defined]
    assert f.stats.fast_hits == 2
    assert f([1]) == f([1]) == "[1]"  # unhashable: the slow path, every time


def test_one_parameter_template_keys_tell_equal_values_of_other_types_apart() -> None:
    """With a template key, ``f(1)`` and ``f(True)`` render two keys: the memo keeps them apart."""
    cache = _memory_cache()

    @cache.cached(ttl=60, key="v:{x}")
    def f(x: object) -> str:
        return type(x).__name__

    assert [f(1), f(True), f(1), f(True)] == ["int", "bool", "int", "bool"]


def test_a_weakly_held_single_argument_hits_and_is_released() -> None:
    """A frozen dataclass as the only argument is memoized weakly: it hits, then it goes."""
    cache = _memory_cache()

    @cache.cached(ttl=60)
    def norm(p: Point) -> int:
        return abs(p.x)

    point = Point(-3)
    assert norm(point) == norm(point) == norm(Point(-3)) == 3
    assert norm.stats.fast_hits == 2
    assert len(norm._memo) == 1  # type: ignore[attr-defined]
    del point
    gc.collect()
    assert len(norm._memo) == 0  # type: ignore[attr-defined]


def test_a_single_self_method_is_memoized_per_instance() -> None:
    """``def total(self)`` with ``__cache_key__``: each instance hits its own slot."""
    cache = _memory_cache()

    class Cart:
        def __init__(self, items: int) -> None:
            self.items = items

        def __cache_key__(self) -> int:
            return self.items

        @cache.cached(ttl=60)
        def total(self) -> int:
            return self.items * 10

    small, large = Cart(1), Cart(2)
    assert [small.total(), large.total(), small.total(), large.total()] == [10, 20, 10, 20]
    assert Cart.total.stats.fast_hits == 2


def test_refresh_hot_recomputes_single_argument_calls() -> None:
    """``refresh_hot`` finds the memoized one-argument calls and recomputes them."""
    cache = _memory_cache()
    version = [1]

    @cache.cached(ttl=60)
    def f(x: int) -> int:
        return x * version[0]

    assert f(2) == 2
    version[0] = 5
    assert f.refresh_hot() == 1
    assert f(2) == 10

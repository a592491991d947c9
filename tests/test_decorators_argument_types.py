"""``@cache.cached`` never answers a call with the result of an argument it can tell apart.

Equal values of different types (``1``, ``1.0``, ``True``, ``Decimal(1)``), values equal
but distinguishable (``0.0`` and ``-0.0``, ``Decimal("1.0")`` and ``Decimal("1")``, dicts
in another order) and non-finite numbers of different types each get their own entry,
through the memo and through the keys alike, sync and async; an equal copy of the same
type still hits.
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
import math
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import stratacache as sc


class Level(enum.IntEnum):
    """Members equal their int value."""

    ONE = 1


class Mode(str, enum.Enum):
    """Members equal their text."""

    ONE = "1"


class Pair(NamedTuple):
    """Equal to the plain tuple of its fields."""

    a: int
    b: int


def make_values() -> list[Any]:
    """Fresh objects, pairwise distinguishable by a function (``repr`` tells them apart)."""
    paris = dt.timezone(dt.timedelta(hours=2), "CEST")
    return [
        1, True, 1.0, Decimal(1), Decimal("1.0"), Decimal("1.00"), Fraction(1), complex(1, 0),
        0, False, 0.0, -0.0, Decimal(0), Decimal("-0"), complex(0, 0), complex(-0.0, 0),
        float("nan"), -float("nan"), Decimal("NaN"), Decimal("-NaN"), Decimal("sNaN"),
        float("inf"), Decimal("Infinity"), float("-inf"), Decimal("-Infinity"), "inf", "nan",
        "1", b"1", bytearray(b"1"), Level.ONE, Mode.ONE,
        (1,), (1.0,), (True,), [1], [1.0], (1, 2), Pair(1, 2),
        frozenset({1}), {1}, frozenset({1.0}), frozenset({True}),
        {"a": 1, "b": 2}, {"b": 2, "a": 1}, {"a": 1.0, "b": 2}, {1: "a"}, {1.0: "a"}, {True: "a"},
        collections.OrderedDict([("a", 1), ("b", 2)]),
        dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.timezone.utc),
        dt.datetime(2024, 5, 1, 14, 0, tzinfo=paris),
        dt.datetime(2024, 5, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.datetime(2024, 5, 1, 12, 0), dt.datetime(2024, 5, 1, 12, 0, fold=1),
        dt.time(12, 0, tzinfo=dt.timezone.utc), dt.time(14, 0, tzinfo=paris),
        None, "", b"", (), [], {},
    ]  # fmt: skip


def describe(value: Any) -> str:
    """What a function may tell from its argument: its type, repr, a float's sign."""
    sign = math.copysign(1.0, value) if isinstance(value, float) else ""
    return f"{type(value).__qualname__}:{value!r}:{sign}"


def _caches(tmp_path: Path) -> dict[str, Callable[[], sc.Cache]]:
    return {
        "memory": lambda: sc.Cache(tiers=[sc.MemoryTier(maxsize=1000)], namespace="t"),
        "sql": lambda: sc.Cache(
            tiers=[sc.SQLTier(f"sqlite:///{tmp_path / 'c.db'}", sweep_interval=0)],
            namespace="t",
        ),
    }


def test_the_values_are_pairwise_distinguishable() -> None:
    """The matrix below is meaningful: a function can tell every two of its values apart."""
    described = [describe(v) for v in make_values()]
    assert len(set(described)) == len(described)


@pytest.mark.parametrize("storage", ["memory", "sql"])
def test_sync_calls_with_distinguishable_arguments_never_share_a_result(
    storage: str, tmp_path: Path
) -> None:
    """Each value loads once and gets its own result, in any order; equal copies hit."""
    cache = _caches(tmp_path)[storage]()
    loads: list[str] = []

    @cache.cached(ttl=60)
    def probe(value: Any) -> str:
        loads.append(describe(value))
        return describe(value)

    values = make_values()
    for value in values + values[::-1]:
        assert probe(value) == describe(value)
    assert len(loads) == len(values)
    for value in make_values():  # fresh equal copies of the same types
        assert probe(value) == describe(value)
    assert len(loads) == len(values)
    cache.sync.close()


@pytest.mark.parametrize("storage", ["memory", "sql"])
async def test_async_calls_with_distinguishable_arguments_never_share_a_result(
    storage: str, tmp_path: Path
) -> None:
    """The async decorator keys exactly as the sync one."""
    cache = _caches(tmp_path)[storage]()
    loads: list[str] = []

    @cache.cached(ttl=60)
    async def probe(value: Any, flag: int = 0) -> str:
        loads.append(describe(value))
        return describe(value)

    async with cache:
        values = make_values()
        for value in values + values[::-1]:
            assert await probe(value) == describe(value)
        for value in make_values():
            assert await probe(value, flag=0) == describe(value)
        assert len(loads) == len(values)


def test_keyword_arguments_in_another_order_are_another_call() -> None:
    """``**kwargs`` arrive in call order, which the function sees: another order, another key."""
    cache = sc.Cache(tiers=[sc.MemoryTier(maxsize=100)], namespace="t")

    @cache.cached(ttl=60)
    def names(**kwargs: int) -> list[str]:
        return list(kwargs)

    assert names(a=1, b=2) == ["a", "b"]
    assert names(b=2, a=1) == ["b", "a"]
    assert names(a=1, b=2) == ["a", "b"]

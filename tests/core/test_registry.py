"""The type registry: user types by registered name, built-in kinds named automatically."""

from __future__ import annotations

import dataclasses
from decimal import Decimal
from typing import Any

import pytest
from tests.core.value_kinds import Level, Point, Slug, same

import stratacache as sc
from stratacache.core.errors import ConfigError, DeserializationError, SerializationError
from stratacache.core.registry import TypeRegistry
from stratacache.core.serializer import MsgpackSerializer


class Money:
    """A user class with its own equality, stored through encode/decode."""

    def __init__(self, amount: Decimal, currency: str) -> None:
        self.amount, self.currency = amount, currency

    def __eq__(self, other: object) -> bool:
        return (
            type(other) is Money and self.amount == other.amount and self.currency == other.currency
        )

    __hash__ = None  # type: ignore[assignment]


def _money_registry() -> TypeRegistry:
    registry = TypeRegistry()
    sc.register_type(
        Money,
        name="money",
        encode=lambda m: [m.amount, m.currency],
        decode=lambda s: Money(*s),
        registry=registry,
    )
    return registry


def test_a_registered_user_type_round_trips_by_its_name() -> None:
    """A class registered with encode/decode comes back equal, of its own type, nested too."""
    ser = MsgpackSerializer(_money_registry())
    value = {"price": Money(Decimal("9.99"), "EUR"), "list": [Money(Decimal(1), "USD")]}
    out = ser.loads(ser.dumps(value))
    assert out == value and type(out["price"]) is Money


def test_the_decorator_form_registers_the_class() -> None:
    """``@register_type(name=...)`` registers the class it decorates and returns it."""
    registry = TypeRegistry()

    @sc.register_type(name="tests.point3", registry=registry)
    @dataclasses.dataclass
    class Point3:
        x: int
        y: int
        z: int

    ser = MsgpackSerializer(registry)
    assert registry.name_of(Point3) == "tests.point3"
    assert ser.loads(ser.dumps(Point3(1, 2, 3))) == Point3(1, 2, 3)


def test_a_str_subclass_round_trips_once_registered() -> None:
    """A refused builtin subclass is supported exactly once registered with encode/decode."""
    registry = TypeRegistry()
    sc.register_type(Slug, name="slug", encode=str, decode=Slug, registry=registry)
    ser = MsgpackSerializer(registry)
    assert same(ser.loads(ser.dumps([Slug("a")])), [Slug("a")])


def test_a_reader_needs_the_type_registered_else_it_misses() -> None:
    """A process that never stored a dataclass misses until it registers it, then decodes."""
    data = MsgpackSerializer(TypeRegistry()).dumps(Point(1, 2))
    reader_registry = TypeRegistry()
    reader = MsgpackSerializer(reader_registry)
    with pytest.raises(DeserializationError):
        reader.loads(data)
    sc.register_type(Point, registry=reader_registry)
    assert same(reader.loads(data), Point(1, 2))


def test_a_decode_returning_another_type_is_a_miss() -> None:
    """A user decode that returns something else than the class is treated as a miss."""
    registry = TypeRegistry()
    sc.register_type(
        Money, name="money", encode=lambda m: m.currency, decode=str, registry=registry
    )
    ser = MsgpackSerializer(registry)
    with pytest.raises(DeserializationError, match=r"gave a builtins\.str"):
        ser.loads(ser.dumps(Money(Decimal(1), "EUR")))


def test_a_failing_user_encode_is_a_serialization_error() -> None:
    """An exception in a user's encode becomes a SerializationError naming the type."""
    registry = TypeRegistry()
    sc.register_type(Money, name="money", encode=lambda m: 1 / 0, decode=Money, registry=registry)
    with pytest.raises(SerializationError, match="money"):
        MsgpackSerializer(registry).dumps(Money(Decimal(1), "EUR"))


@pytest.mark.parametrize(
    ("cls", "kwargs", "message"),
    [
        (int, {}, "built in"),
        (Decimal, {"encode": str, "decode": Decimal}, "built in"),
        (Money, {}, "encode= and decode="),
        (Money, {"encode": str}, "both"),
        (Money, {"name": "", "encode": str, "decode": str}, "non-empty"),
        ("Money", {}, "a class"),
    ],
    ids=["builtin", "handled-type", "no-codec", "half-codec", "empty-name", "not-a-class"],
)
def test_bad_registrations_are_config_errors(
    cls: Any, kwargs: dict[str, Any], message: str
) -> None:
    """Registering a builtin, half a codec, a bad name or a non-class fails at once."""
    with pytest.raises(ConfigError, match=message):
        sc.register_type(cls, registry=TypeRegistry(), **kwargs)


def test_one_name_cannot_name_two_classes() -> None:
    """A second class under a taken name is a ConfigError; the same class again is fine."""
    registry = TypeRegistry()
    sc.register_type(Point, name="shared", registry=registry)
    sc.register_type(Point, name="shared", registry=registry)
    with pytest.raises(ConfigError, match="already registered"):
        sc.register_type(Level, name="shared", registry=registry)


def test_an_automatic_name_taken_by_another_class_is_refused() -> None:
    """Auto-naming never lets a second class take over a name another class holds."""
    registry = TypeRegistry()
    sc.register_type(Level, name=f"{Point.__module__}.{Point.__qualname__}", registry=registry)
    with pytest.raises(SerializationError, match="another class"):
        MsgpackSerializer(registry).dumps(Point(1, 2))


def test_a_local_class_needs_an_explicit_name() -> None:
    """A class defined inside a function is refused automatically, accepted with a name."""

    @dataclasses.dataclass
    class Local:
        a: int = 1

    registry = TypeRegistry()
    ser = MsgpackSerializer(registry)
    with pytest.raises(SerializationError, match="inside a function"):
        ser.dumps(Local())
    with pytest.raises(ConfigError, match="inside a function"):
        sc.register_type(Local, registry=registry)
    sc.register_type(Local, name="local", registry=registry)
    assert ser.loads(ser.dumps(Local(5))) == Local(5)


def test_registering_under_a_new_name_keeps_the_old_name_readable() -> None:
    """After a rename, values stored under the old name still decode; new ones use the new name."""
    registry = TypeRegistry()
    ser = MsgpackSerializer(registry)
    old = ser.dumps(Point(1, 2))
    sc.register_type(Point, name="point.v2", registry=registry)
    assert registry.name_of(Point) == "point.v2"
    assert same(ser.loads(old), Point(1, 2)) and same(
        ser.loads(ser.dumps(Point(3, 4))), Point(3, 4)
    )

"""Canonical bytes of call arguments: one call, one encoding, the same in every process.

Two arguments encode alike when they are equal (``==``) **and** the function
could not tell them apart: equal values of other types (``1``, ``1.0``,
``True``, ``Decimal(1)``, ``Fraction(1)``, an ``IntEnum`` member, a namedtuple
and its tuple, a ``set`` and a ``frozenset``), and equal values a function can
see differ in (``0.0`` and ``-0.0``, ``Decimal("1.0")`` and ``Decimal("1")``,
dicts in another insertion order, aware datetimes in other zones, ``fold``)
encode apart: serving one's result for the other would be a wrong value. Sets
encode in the order of their items' encodings (their iteration order is not
the caller's to choose). Nothing depends on ``hash()``, ``id()``, memory
addresses or ``repr()``.

What encodes (anything else raises ``UnkeyableError`` naming the type):

- ``None``, ``bool``, ``int``, ``float`` (by its bits), ``complex``,
  ``Decimal`` (sign, digits, exponent), ``Fraction``, ``str``, ``bytes``,
  ``bytearray``, each under its own type tag;
- ``tuple``, ``list``, mappings, ``set``/``frozenset``, with encodable items;
- ``date``, ``datetime`` and ``time`` (wall clock, ``fold`` and zone),
  ``timedelta``, ``UUID``;
- enum members (by class and name), classes and module-level functions (by
  qualified name);
- subclasses of the value types above (namedtuples, ``OrderedDict``,
  ``defaultdict`` with its factory, ...) by class and value;
- dataclass instances with ``eq=True`` and pydantic models, by class and the
  fields their ``==`` compares;
- any object whose class defines ``__cache_key__(self)``, by class and what it returns.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import struct
import types
import uuid
from collections.abc import Mapping, Set
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

#: The method a class defines to give its instances a stable cache identity.
CACHE_KEY_METHOD = "__cache_key__"
_MAX_DEPTH = 64
_EPOCH = dt.datetime(1, 1, 1)
_pack_len = struct.Struct(">I").pack
_pack_double = struct.Struct(">d").pack
#: value types whose subclasses key as class + value (datetime before its base, date)
_VALUE_BASES: tuple[type, ...] = (
    bool, int, float, complex, str, bytes, bytearray, tuple, list, Mapping, Set,
    Decimal, Fraction, dt.datetime, dt.date, dt.time, dt.timedelta, uuid.UUID,
)  # fmt: skip
#: how a subclass instance becomes its base type's (where calling the base would not do)
_AS_BASE: dict[type, Any] = {
    str: str.__str__,
    Fraction: lambda v: Fraction(v.numerator, v.denominator),
    dt.datetime: lambda v: dt.datetime.combine(dt.date.fromordinal(v.toordinal()), v.timetz()),
    dt.date: lambda v: dt.date.fromordinal(v.toordinal()),
    dt.time: lambda v: dt.time(v.hour, v.minute, v.second, v.microsecond, v.tzinfo, fold=v.fold),
    dt.timedelta: lambda v: dt.timedelta(v.days, v.seconds, v.microseconds),
    uuid.UUID: lambda v: uuid.UUID(int=v.int),
}


class UnkeyableError(TypeError):
    """A value has no stable, process-independent encoding (``path`` says where it sits)."""

    def __init__(self, value: object, path: str, reason: str = "") -> None:
        self.value_type = type(value)
        self.path = path
        self.reason = reason
        super().__init__(
            f"{path}: {qualified_name(type(value))} has no stable representation{reason}"
        )


def qualified_name(obj: Any) -> str:
    """``module.qualname`` of a class or function."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _stable_name(kind: type, value: object, path: str) -> str:
    """``kind``'s qualified name, if it names one class in every process; else refuse.

    Classes made inside a function (``<locals>`` in the name) share their name with every
    other class the same code makes (a factory's classes), so the name cannot tell them
    apart: keying by it could answer one class's call with another's result.
    """
    name = qualified_name(kind)
    if "<" in name:
        raise UnkeyableError(
            value, path, " (a class defined inside a function: its name is not unique)"
        )
    return name


def canonical_bytes(value: object, path: str = "argument") -> bytes:
    """The canonical encoding of ``value``; ``UnkeyableError`` if it has none."""
    out: list[bytes] = []
    _encode(value, out, path, 0)
    return b"".join(out)


def _text(tag: bytes, text: str, out: list[bytes]) -> None:
    data = text.encode("utf-8", "surrogatepass")
    out.append(tag + _pack_len(len(data)) + data)


def _int(value: int, out: list[bytes]) -> None:
    out.append(b"i" + value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True) + b";")


def _decimal(value: Decimal, out: list[bytes]) -> None:
    """By sign, digits and exponent: ``Decimal("1.0")`` and ``Decimal("1")`` print apart."""
    sign, digits, exponent = value.as_tuple()
    _text(b"D", f"{sign}:{''.join(map(str, digits))}:{exponent}", out)


def _sorted_items(encoded: list[bytes], tag: bytes, out: list[bytes]) -> None:
    encoded.sort()
    out.append(tag + _pack_len(len(encoded)))
    out.extend(encoded)


def _mapping(value: Mapping[Any, Any], out: list[bytes], path: str, depth: int) -> None:
    """Items in iteration order: a function can see the order of equal dicts."""
    out.append(b"d" + _pack_len(len(value)))
    for k, v in value.items():
        _encode(k, out, f"{path} key {k!r}", depth + 1)
        _encode(v, out, f"{path}[{k!r}]", depth + 1)


def _encode(value: object, out: list[bytes], path: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise UnkeyableError(value, path, " (nested too deeply, or it contains itself)")
    kind = type(value)
    v: Any = value  # typed by the branch taken
    if kind is str:
        _text(b"s", v, out)
    elif value is None:
        out.append(b"N")
    elif kind is int:
        _int(v, out)
    elif kind is bool:
        out.append(b"B1" if v else b"B0")
    elif kind is float:  # by its bits: 0.0 and -0.0, and NaNs of either sign, stay apart
        out.append(b"f" + _pack_double(v))
    elif kind is tuple or kind is list:
        _sequence(v, out, path, depth, b"t" if kind is tuple else b"l")
    elif kind is dict:
        _mapping(v, out, path, depth)
    elif kind is Decimal:
        _decimal(v, out)
    elif kind is Fraction:
        out.append(b"q")
        _int(v.numerator, out)
        _int(v.denominator, out)
    elif kind is complex:
        out.append(b"j" + _pack_double(v.real) + _pack_double(v.imag))
    elif kind is bytes or kind is bytearray:
        tag = b"b" if kind is bytes else b"a"
        out.append(tag + _pack_len(len(v)) + bytes(v))
    elif kind is frozenset or kind is set:
        items = [canonical_item(item, path, depth) for item in v]
        _sorted_items(items, b"F" if kind is frozenset else b"S", out)
    elif isinstance(value, enum.Enum):  # IntEnum and StrEnum members too: not their value
        _text(b"e", _stable_name(kind, value, path), out)
        _text(b"", v.name or repr(v.value), out)
    elif isinstance(value, type):
        _text(b"c", _stable_name(value, value, path), out)
    elif kind is dt.datetime:
        out.append(b"T1" if v.fold else b"T0")
        _int(_micros(v.replace(tzinfo=None) - _EPOCH), out)
        _zone(v, out, path)
    elif kind is dt.date:
        out.append(b"Td")
        _int(v.toordinal(), out)
    elif kind is dt.time:
        out.append(b"H1" if v.fold else b"H0")
        _int(((v.hour * 60 + v.minute) * 60 + v.second) * 10**6 + v.microsecond, out)
        _zone(v, out, path)
    elif kind is dt.timedelta:
        out.append(b"D")
        _int(_micros(v), out)
    elif kind is uuid.UUID:
        out.append(b"u" + v.bytes)
    else:
        _object(value, out, path, depth)


def _zone(value: Any, out: list[bytes], path: str) -> None:
    """A datetime's or time's zone: equal instants in two zones print apart."""
    zone = value.tzinfo
    if zone is None:
        out.append(b"n")
    elif type(zone) is dt.timezone:
        out.append(b"z")
        _int(_micros(zone.utcoffset(None)), out)
        _text(b"", zone.tzname(None), out)
    elif type(zone) is ZoneInfo and zone.key:
        _text(b"Z", zone.key, out)
    else:  # another tzinfo: what it says about this value
        _text(b"o", _stable_name(type(zone), zone, path), out)
        for delta in (value.utcoffset(), value.dst()):
            if delta is None:
                out.append(b"n")
            else:
                _int(_micros(delta), out)
        name = value.tzname()
        out.append(b"n" if name is None else b"")
        _text(b"", name or "", out)


def canonical_item(value: object, path: str, depth: int) -> bytes:
    """One nested item's encoding (used for set members)."""
    part: list[bytes] = []
    _encode(value, part, f"{path} item", depth + 1)
    return b"".join(part)


def _sequence(value: Any, out: list[bytes], path: str, depth: int, tag: bytes) -> None:
    out.append(tag + _pack_len(len(value)))
    for i, item in enumerate(value):
        _encode(item, out, f"{path}[{i}]", depth + 1)


def _micros(delta: dt.timedelta) -> int:
    return (delta.days * 86400 + delta.seconds) * 10**6 + delta.microseconds


def _object(value: object, out: list[bytes], path: str, depth: int) -> None:
    """Objects: ``__cache_key__``, dataclasses, pydantic models, module-level functions."""
    kind = type(value)
    method = getattr(kind, CACHE_KEY_METHOD, None)
    if method is not None:
        _text(b"k", qualified_name(kind), out)
        _encode(method(value), out, f"{path}.{CACHE_KEY_METHOD}()", depth + 1)
        return
    params = getattr(kind, "__dataclass_params__", None)
    if params is not None and dataclasses.is_dataclass(value):
        if not params.eq:
            raise UnkeyableError(value, path, " (a dataclass with eq=False compares by identity)")
        _text(b"o", _stable_name(kind, value, path), out)
        fields = [f for f in dataclasses.fields(value) if f.compare]
        out.append(_pack_len(len(fields)))
        for f in fields:
            _text(b"", f.name, out)
            _encode(getattr(value, f.name), out, f"{path}.{f.name}", depth + 1)
        return
    if hasattr(kind, "model_fields") and hasattr(kind, "model_dump"):  # pydantic v2
        fields_dict = dict(getattr(value, "__dict__", {}))
        fields_dict.update(getattr(value, "__pydantic_extra__", None) or {})
        private = getattr(value, "__pydantic_private__", None)  # pydantic's == compares it too
        if private:
            fields_dict["\x00private"] = dict(private)
        _text(b"p", _stable_name(kind, value, path), out)
        _encode(fields_dict, out, path, depth + 1)
        return
    base = next((b for b in _VALUE_BASES if isinstance(value, b)), None)
    if base is not None:  # a subclass of a value type: its class, then the value as the base
        _text(b"x", _stable_name(kind, value, path), out)
        if isinstance(value, Mapping):
            factory = getattr(value, "default_factory", None)  # a defaultdict's answers
            if factory is not None:
                _encode(factory, out, f"{path}.default_factory", depth + 1)
            _mapping(value, out, path, depth)
        elif isinstance(value, Set):
            _sorted_items([canonical_item(v, path, depth) for v in value], b"S", out)
        else:
            _encode(_AS_BASE.get(base, base)(value), out, path, depth + 1)
        return
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
        name = qualified_name(value)
        if "<" in name:  # lambdas and closures share their qualified names
            raise UnkeyableError(value, path, " (a lambda or nested function)")
        _text(b"F", name, out)
        return
    raise UnkeyableError(value, path)

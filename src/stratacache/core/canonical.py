"""Canonical bytes of call arguments: equal arguments give equal bytes in every process.

The rule for "the same call" is Python's own equality, the one ``dict`` keys and
``functools.lru_cache`` use: two arguments that compare equal encode alike, so
``f(1)``, ``f(1.0)`` and ``f(True)`` are one call, ``{"a": 1, "b": 2}`` and
``{"b": 2, "a": 1}`` are one call, and so are ``frozenset([1, 9])`` and
``frozenset([9, 1])``. Nothing depends on ``hash()``, ``id()``, memory
addresses, ``repr()`` or insertion order: numbers encode as exact rationals,
mappings and sets in the order of their items' encodings.

What encodes (anything else raises ``UnkeyableError`` naming the type):

- ``None``, ``bool``, ``int``, ``float``, ``complex``, ``Decimal``, ``Fraction``
  (by exact numeric value), ``str``, ``bytes``/``bytearray``;
- ``tuple`` (namedtuples included: they equal tuples), ``list``, mappings,
  ``set``/``frozenset``, with encodable items;
- ``date``, ``datetime`` (aware ones by their UTC instant), ``time``,
  ``timedelta``, ``UUID``;
- enum members (by class and name; ``IntEnum``/``StrEnum`` members equal their
  value and encode as it), classes and module-level functions (by qualified name);
- dataclass instances with ``eq=True`` and pydantic models, by class and fields;
- any object whose class defines ``__cache_key__(self)``, by class and what it returns.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import struct
import types
import uuid
from collections.abc import Mapping, Set
from decimal import Decimal
from fractions import Fraction
from typing import Any

#: The method a class defines to give its instances a stable cache identity.
CACHE_KEY_METHOD = "__cache_key__"
_MAX_DEPTH = 64
_MAX_EXPONENT = 4000  # Decimals beyond 10**±4000 encode by their digits, not as a ratio
_EPOCH = dt.datetime(1, 1, 1)
_pack_len = struct.Struct(">I").pack


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
    """``module.qualname`` of a class or function.

    The main script is ``__main__`` in every process: multiprocessing's spawn and
    forkserver children run it again as ``__mp_main__``, and their keys must be the
    parent's, or the parent's invalidations miss the children's entries.
    """
    module = getattr(obj, "__module__", "?")
    if module == "__mp_main__":
        module = "__main__"
    return f"{module}.{getattr(obj, '__qualname__', repr(obj))}"


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


def _number(num: int, den: int, out: list[bytes]) -> None:
    if den == 1:
        _int(num, out)
    else:
        out.append(b"q")
        _int(num, out)
        _int(den, out)


def _real(value: Any, out: list[bytes], path: str) -> None:
    """Ints, floats, Decimals and Fractions by exact value (so 1 == 1.0 == Decimal(1))."""
    if isinstance(value, int):
        _int(int(value), out)
    elif isinstance(value, float):
        if math.isfinite(value):
            _number(*value.as_integer_ratio(), out)
        else:
            out.append(b"f" + repr(float(value)).encode() + b";")  # nan, inf, -inf
    elif isinstance(value, Decimal):
        if value.is_nan():  # equal to nothing, a float NaN included: a key of its own kind
            out.append(b"dsnan;" if value.is_snan() else b"dnan;")
        elif value.is_infinite():
            out.append(b"f-inf;" if value < 0 else b"finf;")
        elif abs(value.adjusted()) > _MAX_EXPONENT:  # no float equals it; spare 10**huge
            sign, digits, exponent = value.as_tuple()
            text = "".join(map(str, digits)).rstrip("0")
            _text(b"Q", f"{sign}:{text}e{int(exponent) + len(digits) - len(text)}", out)
        else:
            _number(*value.as_integer_ratio(), out)
    elif isinstance(value, Fraction):
        _number(value.numerator, value.denominator, out)
    else:  # pragma: no cover - guarded by the caller
        raise UnkeyableError(value, path)


def _sorted_items(encoded: list[bytes], tag: bytes, out: list[bytes]) -> None:
    encoded.sort()
    out.append(tag + _pack_len(len(encoded)))
    out.extend(encoded)


def _encode(value: object, out: list[bytes], path: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise UnkeyableError(value, path, " (nested too deeply, or it contains itself)")
    kind = type(value)
    if kind is str:
        _text(b"s", value, out)  # type: ignore[arg-type]
    elif value is None:
        out.append(b"N")
    elif kind is int or kind is bool:
        _int(int(value), out)  # type: ignore[call-overload]
    elif kind is float or kind is Decimal or kind is Fraction:
        _real(value, out, path)
    elif kind is tuple or kind is list:
        _sequence(value, out, path, depth, b"t" if kind is tuple else b"l")
    elif isinstance(value, enum.Enum) and not isinstance(value, (int, float, str, bytes)):
        _text(b"e", qualified_name(kind), out)
        _text(b"", value.name or repr(value.value), out)
    elif isinstance(value, (int, float, Decimal, Fraction)):  # IntEnum, IntFlag, subclasses
        _real(value, out, path)
    elif isinstance(value, complex):
        if value.imag == 0:
            _real(value.real, out, path)
        else:
            out.append(b"j")
            _real(value.real, out, path)
            _real(value.imag, out, path)
    elif isinstance(value, str):  # StrEnum and other str subclasses equal their text
        _text(b"s", str.__str__(value), out)
    elif isinstance(value, (bytes, bytearray)):
        out.append(b"b" + _pack_len(len(value)) + bytes(value))
    elif isinstance(value, (tuple, list)):  # namedtuples equal tuples
        _sequence(value, out, path, depth, b"t" if isinstance(value, tuple) else b"l")
    elif isinstance(value, Mapping):
        items = []
        for k, v in value.items():
            part: list[bytes] = []
            _encode(k, part, f"{path} key {k!r}", depth + 1)
            _encode(v, part, f"{path}[{k!r}]", depth + 1)
            items.append(b"".join(part))
        _sorted_items(items, b"d", out)
    elif isinstance(value, Set):
        items = [canonical_item(v, path, depth) for v in value]
        _sorted_items(items, b"S", out)
    elif isinstance(value, type):
        _text(b"c", _stable_name(value, value, path), out)
    elif isinstance(value, dt.datetime):
        offset = value.utcoffset()
        micros = _micros(value.replace(tzinfo=None) - _EPOCH)
        if offset is None:
            out.append(b"Tn")
        else:  # aware datetimes are equal when they name the same instant
            out.append(b"Ta")
            micros -= _micros(offset)
        _int(micros, out)
    elif isinstance(value, dt.date):
        out.append(b"Td")
        _int(value.toordinal(), out)
    elif isinstance(value, dt.time):
        offset = value.utcoffset()
        micros = ((value.hour * 60 + value.minute) * 60 + value.second) * 10**6 + value.microsecond
        out.append(b"Ht" if offset is None else b"Hz")
        _int(micros - (0 if offset is None else _micros(offset)), out)
    elif isinstance(value, dt.timedelta):
        out.append(b"D")
        _int(_micros(value), out)
    elif isinstance(value, uuid.UUID):
        out.append(b"u" + value.bytes)
    else:
        _object(value, out, path, depth)


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
        state = getattr(value, "__dict__", {})
        names = getattr(kind, "__pydantic_fields__", None)
        # the fields, as pydantic's == compares them: a cached_property's value, also kept
        # in __dict__, is neither a field nor compared
        fields_dict = dict(state) if names is None else {n: state[n] for n in names if n in state}
        fields_dict.update(getattr(value, "__pydantic_extra__", None) or {})
        private = getattr(value, "__pydantic_private__", None)  # pydantic's == compares it too
        if private:
            fields_dict["\x00private"] = dict(private)
        _text(b"p", _stable_name(kind, value, path), out)
        _encode(fields_dict, out, path, depth + 1)
        return
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType)):
        name = qualified_name(value)
        if "<" in name:  # lambdas and closures share their qualified names
            raise UnkeyableError(value, path, " (a lambda or nested function)")
        _text(b"F", name, out)
        return
    raise UnkeyableError(value, path)

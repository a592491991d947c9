"""Value serialization: msgpack with extension types, never pickle.

Round-trips exactly the values applications cache every day: None, bool, int
(any size), float, str, bytes, list, tuple (kept apart from list), dict, set,
frozenset, datetime/date/time (with tzinfo as a UTC offset), timedelta,
Decimal and UUID. Anything else raises ``SerializationError`` naming its type,
so a bad value is refused at the call site instead of surprising a reader.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import msgpack

from .errors import DeserializationError, SerializationError

_DATETIME, _DATE, _TIME, _DECIMAL, _UUID, _TUPLE, _SET, _FROZENSET, _TIMEDELTA, _BIGINT = range(
    1, 11
)


@runtime_checkable
class Serializer(Protocol):
    """Turns a value into bytes and back; ``loads`` raises ``DeserializationError`` on bad input."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, default=_default, strict_types=True, use_bin_type=True)  # type: ignore[no-any-return]


def _default(obj: Any) -> Any:
    # strict_types sends tuples and subclasses of builtins here, so tuple stays tuple.
    if isinstance(obj, tuple):
        return msgpack.ExtType(_TUPLE, _pack(list(obj)))
    if isinstance(obj, dt.datetime):
        return msgpack.ExtType(_DATETIME, obj.isoformat().encode())
    if isinstance(obj, dt.date):
        return msgpack.ExtType(_DATE, obj.isoformat().encode())
    if isinstance(obj, dt.time):
        return msgpack.ExtType(_TIME, obj.isoformat().encode())
    if isinstance(obj, dt.timedelta):
        return msgpack.ExtType(_TIMEDELTA, _pack([obj.days, obj.seconds, obj.microseconds]))
    if isinstance(obj, Decimal):
        return msgpack.ExtType(_DECIMAL, str(obj).encode())
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(_UUID, obj.bytes)
    if isinstance(obj, frozenset):
        return msgpack.ExtType(_FROZENSET, _pack(list(obj)))
    if isinstance(obj, set):
        return msgpack.ExtType(_SET, _pack(list(obj)))
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        if -(2**63) <= obj < 2**64:
            return int(obj)
        return msgpack.ExtType(_BIGINT, str(int(obj)).encode())
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return bytes(obj)
    if isinstance(obj, dict):
        return dict(obj)
    if isinstance(obj, list):
        return list(obj)
    raise SerializationError(
        f"cannot serialize a value of type {type(obj).__module__}.{type(obj).__qualname__}: "
        "cache plain data (dict, list, tuple, str, int, float, bytes, datetime, Decimal, UUID, "
        "set) or convert it first"
    )


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _TUPLE:
        return tuple(_unpack(data))
    if code == _DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == _DATE:
        return dt.date.fromisoformat(data.decode())
    if code == _TIME:
        return dt.time.fromisoformat(data.decode())
    if code == _TIMEDELTA:
        days, seconds, micro = _unpack(data)
        return dt.timedelta(days=days, seconds=seconds, microseconds=micro)
    if code == _DECIMAL:
        return Decimal(data.decode())
    if code == _UUID:
        return uuid.UUID(bytes=data)
    if code == _SET:
        return set(_unpack(data))
    if code == _FROZENSET:
        return frozenset(_unpack(data))
    if code == _BIGINT:
        return int(data.decode())
    raise DeserializationError(f"unknown msgpack extension type {code}")


class MsgpackSerializer:
    """The default serializer: msgpack plus the extension types listed in this module."""

    def dumps(self, value: Any) -> bytes:
        try:
            return _pack(value)
        except SerializationError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(f"cannot serialize value: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        try:
            return _unpack(data)
        except DeserializationError:
            raise
        except Exception as exc:  # msgpack raises many types on garbage input
            raise DeserializationError(f"stored bytes do not decode: {exc!r}") from exc

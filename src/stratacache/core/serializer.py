"""Value serialization: msgpack with extension types, never pickle.

The rule: a value decodes to an object of exactly the same type that compares
equal, all the way down, or ``dumps`` refuses it with a ``SerializationError``
naming the type. The engine encodes every value when it is set, whatever the
tiers, so a memory-only cache refuses exactly what Redis or SQL would change.

Round-trips: None, bool, int (any size), float, complex, str, bytes, bytearray, list,
tuple, dict, set, frozenset, ``OrderedDict``, ``defaultdict`` (with a built-in
or registered ``default_factory``), ``Counter``, ``deque`` (with its
``maxlen``), datetime/date/time (naive, fixed-offset ``timezone`` with its
name, or ``ZoneInfo`` with its key; ``fold`` kept), timedelta, Decimal, UUID;
and by registered name (see ``stratacache.core.registry``): enums (``Enum``,
``IntEnum``, ``StrEnum``, ``Flag``), namedtuples, dataclasses, pydantic v2
models and user types. Refused: subclasses of any of these that are not
registered (a ``str`` subclass, a ``pandas.Timestamp``), other tzinfo
implementations (pytz, dateutil), ``memoryview``, and anything else.
"""

from __future__ import annotations

import collections
import datetime as dt
import gc
import uuid
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import msgpack

from .errors import DeserializationError, SerializationError
from .registry import TypeRegistry, default_registry

# 1-10: the original codes (_BIGINT as decimal text is still decoded, no longer written)
_DATETIME, _DATE, _TIME, _DECIMAL, _UUID, _TUPLE, _SET, _FROZENSET, _TIMEDELTA, _BIGINT = range(
    1, 11
)
_ZONED_DATETIME, _ZONED_TIME, _INT, _BYTEARRAY, _ORDEREDDICT = range(11, 16)
_DEFAULTDICT, _COUNTER, _DEQUE, _COMPLEX, _REGISTERED = range(16, 21)

#: ``default_factory`` values a stored ``defaultdict`` may name (besides registered classes)
_FACTORIES: dict[str, Callable[[], Any]] = {
    f.__name__: f
    for f in (list, dict, set, frozenset, tuple, int, float, complex, str, bytes, bool)
}
_FACTORIES.update(
    OrderedDict=collections.OrderedDict, Counter=collections.Counter, deque=collections.deque
)
_FACTORY_NAMES = {f: name for name, f in _FACTORIES.items()}
#: types whose instances reference no other object (gc.get_referents finds nothing in them)
_ATOMS = frozenset({str, int, float, bool, type(None), bytes})
_CONTAINERS = (list, dict)
_PLAIN = _ATOMS | {list, dict}


@runtime_checkable
class Serializer(Protocol):
    """Turns a value into bytes and back; ``loads`` raises ``DeserializationError`` on bad input."""

    def dumps(self, value: Any) -> bytes: ...

    def loads(self, data: bytes) -> Any: ...


class MsgpackSerializer:
    """The default serializer: msgpack plus the extension types listed in this module.

    Args:
        registry: where registered and automatically named types are looked up
            (default: the process-wide registry that ``stratacache.register_type`` fills).
    """

    def __init__(self, registry: TypeRegistry | None = None) -> None:
        self.registry = registry if registry is not None else default_registry

    def dumps(self, value: Any) -> bytes:
        """``value`` as bytes; ``SerializationError`` naming the first type that cannot round-trip."""
        try:
            return self._pack(value)
        except SerializationError:
            raise
        except (TypeError, ValueError, OverflowError, RecursionError) as exc:
            raise SerializationError(f"cannot serialize value: {exc}") from exc

    def loads(self, data: bytes) -> Any:
        """The value ``data`` encodes; ``DeserializationError`` for anything we did not write."""
        try:
            return self._unpack(data)
        except DeserializationError:
            raise
        except Exception as exc:  # msgpack raises many types on garbage input
            raise DeserializationError(f"stored bytes do not decode: {exc!r}") from exc

    # -- encoding ----------------------------------------------------------------------------
    def _pack(self, value: Any) -> bytes:
        data: bytes = msgpack.packb(
            value, default=self._default, strict_types=True, use_bin_type=True
        )
        if type(value) in _ATOMS:
            return data
        # msgpack writes bytearray/memoryview as bin without asking ``_default``: only when a
        # bin header byte appears can one be inside, and only then do we look for one.
        if (0xC4 in data or 0xC5 in data or 0xC6 in data) and _holds_buffer(value):
            wrapped = _wrap_buffers(value)
            data = msgpack.packb(
                wrapped, default=self._default, strict_types=True, use_bin_type=True
            )
        return data

    def _default(self, obj: Any) -> Any:
        # strict_types sends here everything but exact None/bool/int/float/str/bytes/list/dict.
        encode = _ENCODERS.get(type(obj))
        if encode is not None:
            return encode(self, obj)
        codec = self.registry.codec_for(type(obj))
        try:
            state = codec.encode(obj)
        except SerializationError:
            raise
        except Exception as exc:
            raise SerializationError(f"cannot serialize {codec.name!r}: {exc!r}") from exc
        return msgpack.ExtType(_REGISTERED, self._pack([codec.name, state]))

    def _factory(self, factory: Any) -> Any:
        if factory is None:
            return None
        name = _FACTORY_NAMES.get(factory) if isinstance(factory, type) else None
        if name is not None:
            return name
        if isinstance(factory, type):
            return [self.registry.codec_for(factory).name]
        raise SerializationError(
            f"cannot serialize a defaultdict whose default_factory is {factory!r}: use a built-in "
            "type (list, dict, set, int, ...) or a registered class"
        )

    # -- decoding ----------------------------------------------------------------------------
    def _unpack(self, data: bytes) -> Any:
        return msgpack.unpackb(data, ext_hook=self._ext_hook, raw=False, strict_map_key=False)

    def _ext_hook(self, code: int, data: bytes) -> Any:
        decode = _DECODERS.get(code)
        if decode is None:
            raise DeserializationError(f"unknown msgpack extension type {code}")
        return decode(self, data)


# -- encoders: exact type → ExtType ------------------------------------------------------------
def _ext(code: int, ser: MsgpackSerializer, state: Any) -> msgpack.ExtType:
    return msgpack.ExtType(code, ser._pack(state))


def _flat(mapping: Any) -> list[Any]:
    return [x for pair in mapping.items() for x in pair]


def _pairs(flat: list[Any]) -> list[tuple[Any, Any]]:
    return list(zip(flat[::2], flat[1::2], strict=True))


def _tz_state(tz: dt.tzinfo | None) -> Any:
    """None, a ``ZoneInfo`` key, or ``[days, seconds, microseconds, name]`` of a ``timezone``."""
    if tz is None:
        return None
    if type(tz) is dt.timezone:
        offset = tz.utcoffset(None)
        name = tz.tzname(None)
        default = dt.timezone(offset).tzname(None)
        return [offset.days, offset.seconds, offset.microseconds, None if name == default else name]
    if type(tz) is zoneinfo.ZoneInfo and tz.key is not None:
        return tz.key
    raise SerializationError(
        f"cannot serialize a datetime with tzinfo {type(tz).__module__}.{type(tz).__qualname__}: "
        "use zoneinfo.ZoneInfo (by key) or datetime.timezone"
    )


def _tz_from(state: Any) -> dt.tzinfo | None:
    if state is None:
        return None
    if isinstance(state, str):
        try:
            return zoneinfo.ZoneInfo(state)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise DeserializationError(f"unknown time zone {state!r}") from exc
    days, seconds, micro, name = state
    offset = dt.timedelta(days=days, seconds=seconds, microseconds=micro)
    return dt.timezone(offset) if name is None else dt.timezone(offset, name)


def _plain_tz(value: dt.datetime | dt.time) -> bool:
    """Does ``isoformat`` alone round-trip it (fold 0; no tzinfo or an unnamed ``timezone``)?"""
    tz = value.tzinfo
    if value.fold:
        return False
    if tz is None:
        return True
    offset = tz.utcoffset(None)
    # fromisoformat drops an offset's microseconds on some Pythons: keep those zoned
    return (
        type(tz) is dt.timezone
        and offset is not None
        and not offset.microseconds
        and tz.tzname(None) == dt.timezone(offset).tzname(None)
    )


def _enc_datetime(ser: MsgpackSerializer, obj: dt.datetime) -> msgpack.ExtType:
    if _plain_tz(obj):
        return msgpack.ExtType(_DATETIME, obj.isoformat().encode())
    naive = obj.replace(tzinfo=None, fold=0).isoformat()
    return _ext(_ZONED_DATETIME, ser, [naive, obj.fold, _tz_state(obj.tzinfo)])


def _enc_time(ser: MsgpackSerializer, obj: dt.time) -> msgpack.ExtType:
    if _plain_tz(obj):
        return msgpack.ExtType(_TIME, obj.isoformat().encode())
    naive = obj.replace(tzinfo=None, fold=0).isoformat()
    return _ext(_ZONED_TIME, ser, [naive, obj.fold, _tz_state(obj.tzinfo)])


def _enc_int(ser: MsgpackSerializer, obj: int) -> msgpack.ExtType:
    return msgpack.ExtType(_INT, obj.to_bytes(obj.bit_length() // 8 + 1, "big", signed=True))


def _enc_defaultdict(ser: MsgpackSerializer, obj: collections.defaultdict[Any, Any]) -> Any:
    return _ext(_DEFAULTDICT, ser, [ser._factory(obj.default_factory), _flat(obj)])


def _refuse_buffer(ser: MsgpackSerializer | None, obj: Any) -> Any:
    raise SerializationError(
        f"cannot serialize a {type(obj).__name__}: it is a view on other memory; cache bytes(view)"
    )


_ENCODERS: dict[type, Callable[[MsgpackSerializer, Any], Any]] = {
    tuple: lambda ser, obj: _ext(_TUPLE, ser, list(obj)),
    dt.datetime: _enc_datetime,
    dt.date: lambda ser, obj: msgpack.ExtType(_DATE, obj.isoformat().encode()),
    dt.time: _enc_time,
    dt.timedelta: lambda ser, obj: _ext(_TIMEDELTA, ser, [obj.days, obj.seconds, obj.microseconds]),
    Decimal: lambda ser, obj: msgpack.ExtType(_DECIMAL, str(obj).encode()),
    uuid.UUID: lambda ser, obj: msgpack.ExtType(_UUID, obj.bytes),
    set: lambda ser, obj: _ext(_SET, ser, list(obj)),
    frozenset: lambda ser, obj: _ext(_FROZENSET, ser, list(obj)),
    int: _enc_int,  # only ints beyond 64 bits get here
    complex: lambda ser, obj: _ext(_COMPLEX, ser, [obj.real, obj.imag]),
    bytearray: lambda ser, obj: msgpack.ExtType(_BYTEARRAY, bytes(obj)),
    memoryview: _refuse_buffer,
    collections.OrderedDict: lambda ser, obj: _ext(_ORDEREDDICT, ser, _flat(obj)),
    collections.defaultdict: _enc_defaultdict,
    collections.Counter: lambda ser, obj: _ext(_COUNTER, ser, _flat(obj)),
    collections.deque: lambda ser, obj: _ext(_DEQUE, ser, [obj.maxlen, list(obj)]),
}


def _holds_buffer(value: Any) -> bool:
    """Is a bytearray or memoryview reachable from ``value`` through exact lists and dicts?

    Walks level by level with ``gc.get_referents`` (one C call per level), so plain
    JSON-like data is checked without a Python loop over its elements.
    """
    level: list[Any] = [value]
    while level:
        kinds = set(map(type, level))
        if bytearray in kinds or memoryview in kinds:
            return True
        if list not in kinds and dict not in kinds:
            return False
        if not kinds <= _PLAIN:  # others are packed (and checked) on their own
            level = [x for x in level if type(x) in _CONTAINERS]
        level = gc.get_referents(*level)
    return False


def _wrap_buffers(value: Any) -> Any:
    """A copy of ``value`` with every bytearray in it (through lists and dicts) as our ExtType."""
    kind = type(value)
    if kind is bytearray:
        return msgpack.ExtType(_BYTEARRAY, bytes(value))
    if kind is memoryview:
        _refuse_buffer(None, value)
    if kind is list:
        return [_wrap_buffers(v) for v in value]
    if kind is dict:
        return {_wrap_buffers(k): _wrap_buffers(v) for k, v in value.items()}
    return value


# -- decoders: ext code → value ----------------------------------------------------------------
def _dec_zoned_datetime(ser: MsgpackSerializer, data: bytes) -> dt.datetime:
    naive, fold, tz = ser._unpack(data)
    return dt.datetime.fromisoformat(naive).replace(tzinfo=_tz_from(tz), fold=fold)


def _dec_zoned_time(ser: MsgpackSerializer, data: bytes) -> dt.time:
    naive, fold, tz = ser._unpack(data)
    return dt.time.fromisoformat(naive).replace(tzinfo=_tz_from(tz), fold=fold)


def _dec_timedelta(ser: MsgpackSerializer, data: bytes) -> dt.timedelta:
    days, seconds, micro = ser._unpack(data)
    return dt.timedelta(days=days, seconds=seconds, microseconds=micro)


def _dec_defaultdict(ser: MsgpackSerializer, data: bytes) -> collections.defaultdict[Any, Any]:
    spec, flat = ser._unpack(data)
    if spec is None:
        factory = None
    elif isinstance(spec, str) and spec in _FACTORIES:
        factory = _FACTORIES[spec]
    elif isinstance(spec, list) and len(spec) == 1:
        factory = ser.registry.codec_named(spec[0]).cls
    else:
        raise DeserializationError(f"unknown defaultdict factory {spec!r}")
    return collections.defaultdict(factory, _pairs(flat))


def _dec_deque(ser: MsgpackSerializer, data: bytes) -> collections.deque[Any]:
    maxlen, items = ser._unpack(data)
    return collections.deque(items, maxlen)


def _dec_registered(ser: MsgpackSerializer, data: bytes) -> Any:
    name, state = ser._unpack(data)
    return ser.registry.codec_named(name).decode(state)


_DECODERS: dict[int, Callable[[MsgpackSerializer, bytes], Any]] = {
    _TUPLE: lambda ser, data: tuple(ser._unpack(data)),
    _DATETIME: lambda ser, data: dt.datetime.fromisoformat(data.decode()),
    _DATE: lambda ser, data: dt.date.fromisoformat(data.decode()),
    _TIME: lambda ser, data: dt.time.fromisoformat(data.decode()),
    _ZONED_DATETIME: _dec_zoned_datetime,
    _ZONED_TIME: _dec_zoned_time,
    _TIMEDELTA: _dec_timedelta,
    _DECIMAL: lambda ser, data: Decimal(data.decode()),
    _UUID: lambda ser, data: uuid.UUID(bytes=data),
    _SET: lambda ser, data: set(ser._unpack(data)),
    _FROZENSET: lambda ser, data: frozenset(ser._unpack(data)),
    _BIGINT: lambda ser, data: int(data.decode()),
    _INT: lambda ser, data: int.from_bytes(data, "big", signed=True),
    _COMPLEX: lambda ser, data: complex(*ser._unpack(data)),
    _BYTEARRAY: lambda ser, data: bytearray(data),
    _ORDEREDDICT: lambda ser, data: collections.OrderedDict(_pairs(ser._unpack(data))),
    _DEFAULTDICT: _dec_defaultdict,
    _COUNTER: lambda ser, data: collections.Counter(dict(_pairs(ser._unpack(data)))),
    _DEQUE: _dec_deque,
    _REGISTERED: _dec_registered,
}

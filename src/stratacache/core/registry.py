"""The type registry: how values of user and library classes are stored, by a registered name.

A stored value names its class by a *registry name*, never by an import path:
decoding looks the name up here and nowhere else, so data written by someone
else can only ever produce classes this process registered. An unknown name
decodes as a miss.

Three ways a class gets a name:

- ``register_type(Money, name="money", encode=..., decode=...)`` (or the same
  as a class decorator): any class, with its own state functions. ``encode``
  returns a value the serializer can store (plain data, other registered
  types); ``decode`` rebuilds the object from it.
- ``register_type(Point)``: a dataclass, enum, namedtuple or pydantic v2 model
  under a chosen (or its qualified) name, with the built-in state functions.
  Do this in processes that only *read* a type, so the first read is a hit.
- Automatically: the first time a dataclass, enum, namedtuple or pydantic
  model is stored, it is registered under ``module.qualname``. A class defined
  inside a function has no stable name and must be registered explicitly.

Built-in state functions, chosen to give back an equal object of the same type:
enums store their member's value; namedtuples their fields; dataclasses and
pydantic models their instance state (``__dict__``/slots, as pickle would,
without running ``__init__``), and a decode must find every field. A
dataclass declared with ``eq=False`` compares by identity, so no copy could
ever equal it: it is refused unless registered with ``encode``/``decode``.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import enum
import sys
import threading
import uuid
import zoneinfo
from collections.abc import Callable
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar, overload

from .errors import ConfigError, DeserializationError, SerializationError
from .schema import SCHEMA_KEY, dataclass_schema, lazy, model_schema

T = TypeVar("T")

#: types the serializer handles itself (registering one would be silently ignored)
_BUILTINS = frozenset(
    {
        type(None), bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set,
        frozenset, memoryview, object, type, dt.datetime, dt.date, dt.time, dt.timedelta,
        dt.timezone, zoneinfo.ZoneInfo, Decimal, uuid.UUID, collections.OrderedDict,
        collections.defaultdict, collections.Counter, collections.deque,
    }
)  # fmt: skip


class TypeCodec(NamedTuple):
    """One registered class: its name and the functions between an instance and its state."""

    name: str
    cls: type
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


class TypeRegistry:
    """Registered names ↔ classes; thread-safe, lookups lock-free once a class is known."""

    def __init__(self) -> None:
        self._by_name: dict[str, TypeCodec] = {}
        self._by_type: dict[type, TypeCodec] = {}
        self._lock = threading.Lock()

    def register(
        self,
        cls: type,
        *,
        name: str | None = None,
        encode: Callable[[Any], Any] | None = None,
        decode: Callable[[Any], Any] | None = None,
    ) -> TypeCodec:
        """Register ``cls`` under ``name`` (default: its qualified name); see ``register_type``."""
        if not isinstance(cls, type):
            raise ConfigError(f"register_type expects a class, not {cls!r}")
        if cls in _BUILTINS:
            raise ConfigError(f"{cls.__qualname__} is built in and cannot be registered")
        if (encode is None) != (decode is None):
            raise ConfigError("register_type needs both encode= and decode=, or neither")
        if name is None:
            if "<locals>" in cls.__qualname__:
                raise ConfigError(f"{_describe(cls)} is defined inside a function: give it a name=")
            name = _qualified_name(cls)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a registered type name must be a non-empty string, not {name!r}")
        if encode is not None and decode is not None:
            codec = TypeCodec(name, cls, encode, _checked(cls, decode))
        else:
            built_in = _builtin_codec(cls, name)
            if built_in is None:
                raise ConfigError(
                    f"{_describe(cls)} is not a dataclass, enum, namedtuple or pydantic model: "
                    "register it with encode= and decode="
                )
            if isinstance(built_in, str):
                raise ConfigError(built_in)
            codec = built_in
        with self._lock:
            taken = self._by_name.get(name)
            if taken is not None and taken.cls is not cls:
                raise ConfigError(
                    f"type name {name!r} is already registered for {_describe(taken.cls)}"
                )
            self._by_name[name] = codec
            self._by_type[cls] = codec  # encoding uses the latest name; older names still decode
        return codec

    def codec_for(self, cls: type) -> TypeCodec:
        """How to encode instances of exactly ``cls``; registers built-in kinds on first use.

        Raises:
            SerializationError: ``cls`` is neither registered nor a supported kind, or
                cannot be named stably.
        """
        codec = self._by_type.get(cls)
        if codec is not None:
            return codec
        name = _qualified_name(cls)
        built_in = _builtin_codec(cls, name)
        if built_in is None:
            raise SerializationError(
                f"cannot serialize a value of type {_describe(cls)}: not a supported type "
                "(see the table of values that round-trip) and not registered; convert it, or "
                "register it with stratacache.register_type(cls, name=..., encode=..., decode=...)"
            )
        if isinstance(built_in, str):
            raise SerializationError(
                f"cannot serialize a value of type {_describe(cls)}: {built_in}"
            )
        if "<locals>" in cls.__qualname__:
            raise SerializationError(
                f"cannot serialize a value of type {_describe(cls)}: a class defined inside a "
                "function has no stable name; register it with stratacache.register_type(cls, name=...)"
            )
        with self._lock:
            taken = self._by_name.get(name)
            if taken is not None and taken.cls is not cls:
                raise SerializationError(
                    f"cannot serialize a value of type {_describe(cls)}: another class is "
                    f"registered as {name!r}; register this one with a name of its own"
                )
            self._by_name.setdefault(name, built_in)
            return self._by_type.setdefault(cls, built_in)

    def codec_named(self, name: str) -> TypeCodec:
        """The codec registered as ``name``; ``DeserializationError`` (a miss) if there is none."""
        codec = self._by_name.get(name) if isinstance(name, str) else None
        if codec is None:
            raise DeserializationError(f"stored value names an unregistered type {name!r}")
        return codec

    def name_of(self, cls: type) -> str | None:
        """The name ``cls`` is registered under, if any (never registers)."""
        codec = self._by_type.get(cls)
        return codec.name if codec is not None else None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name


#: the registry every ``MsgpackSerializer`` uses unless given its own
default_registry = TypeRegistry()


@overload
def register_type(
    cls: type[T],
    /,
    *,
    name: str | None = None,
    encode: Callable[[T], Any] | None = None,
    decode: Callable[[Any], T] | None = None,
    registry: TypeRegistry | None = None,
) -> type[T]: ...


@overload
def register_type(
    cls: None = None,
    /,
    *,
    name: str | None = None,
    encode: Callable[[Any], Any] | None = None,
    decode: Callable[[Any], Any] | None = None,
    registry: TypeRegistry | None = None,
) -> Callable[[type[T]], type[T]]: ...


def register_type(
    cls: type[T] | None = None,
    /,
    *,
    name: str | None = None,
    encode: Callable[[T], Any] | None = None,
    decode: Callable[[Any], T] | None = None,
    registry: TypeRegistry | None = None,
) -> type[T] | Callable[[type[T]], type[T]]:
    """Let the cache store instances of ``cls``, named ``name`` in the stored data.

    Use it as a call (``register_type(Money, name="money", encode=..., decode=...)``)
    or as a class decorator (``@register_type(name="money", encode=..., decode=...)``).
    Without ``encode``/``decode``, ``cls`` must be a dataclass, enum, namedtuple or
    pydantic v2 model and is stored with the built-in state functions.

    Args:
        cls: the class; its exact instances are encoded (subclasses need their own entry).
        name: the stable name written into stored values (default ``module.qualname``);
            every process that reads the value must register the class under it.
        encode: instance → a storable value (plain data or registered types).
        decode: that value → an instance of ``cls`` (anything else is treated as a miss).
        registry: where to register (default: the registry of the default serializer).

    Returns:
        ``cls`` itself (so it works as a decorator), or the decorator when ``cls`` is omitted.

    Raises:
        ConfigError: ``name`` belongs to another class, only one of ``encode``/``decode``
            is given, or ``cls`` is built in or not a supported kind without them.
    """
    target = registry if registry is not None else default_registry

    def apply(klass: type[T]) -> type[T]:
        target.register(klass, name=name, encode=encode, decode=decode)
        return klass

    return apply if cls is None else apply(cls)


# -- built-in kinds ------------------------------------------------------------------------------
def _builtin_codec(cls: type, name: str) -> TypeCodec | str | None:
    """The built-in codec for ``cls``; a reason string when it is a kind we refuse; None if no kind."""
    if issubclass(cls, enum.Enum):
        return TypeCodec(name, cls, _enum_value, _checked(cls, cls))
    if issubclass(cls, tuple) and hasattr(cls, "_fields") and hasattr(cls, "_make"):
        return TypeCodec(name, cls, list, _checked(cls, cls._make))
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(cls, pydantic.BaseModel):
        schema = lazy(model_schema, cls)
        return TypeCodec(
            name, cls, _model_state(schema), _checked(cls, _model_builder(cls, schema))
        )
    if dataclasses.is_dataclass(cls):
        params = getattr(cls, "__dataclass_params__", None)
        if params is not None and not params.eq:
            return (
                "a dataclass with eq=False compares by identity, so no stored copy would equal "
                "it; use eq=True or register it with encode= and decode="
            )
        schema = lazy(dataclass_schema, cls)
        state, build = _dataclass_state(schema), _dataclass_builder(cls, schema)
        return TypeCodec(name, cls, state, _checked(cls, build))
    return None


def _enum_value(member: enum.Enum) -> Any:
    return member.value


def _dataclass_state(schema: Callable[[], str]) -> Callable[[Any], dict[str, Any]]:
    def state_of(obj: Any) -> dict[str, Any]:
        try:
            state = dict(vars(obj))
        except TypeError:  # slots=True: the fields are the state
            state = {}
        for field in dataclasses.fields(obj):
            if field.name not in state:
                state[field.name] = getattr(obj, field.name)
        state[SCHEMA_KEY] = schema()
        return state

    return state_of


def _fits(state: Any, schema: Callable[[], str]) -> bool:
    """Whether ``state`` was stored by this layout of the class (its fingerprint removed)."""
    return isinstance(state, dict) and state.pop(SCHEMA_KEY, None) == schema()


def _dataclass_builder(cls: type[Any], schema: Callable[[], str]) -> Callable[[Any], Any]:
    names = frozenset(f.name for f in dataclasses.fields(cls))

    def build(state: Any) -> Any:
        if (
            not _fits(state, schema)
            or not names <= state.keys()
            or not all(isinstance(k, str) and not k.startswith("__") for k in state)
        ):
            raise DeserializationError(f"stored state does not fit {_describe(cls)}")
        obj = cls.__new__(cls)  # type: ignore[call-overload]
        for key, value in state.items():
            object.__setattr__(obj, key, value)
        return obj

    return build


def _model_state(schema: Callable[[], str]) -> Callable[[Any], Any]:
    def state_of(model: Any) -> Any:
        state = dict(model.__getstate__())
        # a sorted list: equal models give equal bytes in every process (keys digest values)
        state["__pydantic_fields_set__"] = sorted(state.get("__pydantic_fields_set__") or ())
        state[SCHEMA_KEY] = schema()
        return state

    return state_of


def _model_builder(cls: type[Any], schema: Callable[[], str]) -> Callable[[Any], Any]:
    def build(state: Any) -> Any:
        if not _fits(state, schema) or not isinstance(state.get("__dict__"), dict):
            raise DeserializationError(f"stored state does not fit {_describe(cls)}")
        state["__pydantic_fields_set__"] = set(state.get("__pydantic_fields_set__") or ())
        obj = cls.__new__(cls)  # type: ignore[call-overload]
        obj.__setstate__(state)
        return obj

    return build


def _checked(cls: type, decode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``decode`` whose result must be exactly a ``cls``; anything else (or any error) is a miss."""

    def run(state: Any) -> Any:
        try:
            obj = decode(state)
        except DeserializationError:
            raise
        except Exception as exc:
            raise DeserializationError(f"cannot rebuild {_describe(cls)}: {exc!r}") from exc
        if type(obj) is not cls:
            raise DeserializationError(f"decoding {_describe(cls)} gave a {_describe(type(obj))}")
        return obj

    return run


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe(cls: type) -> str:
    return _qualified_name(cls)

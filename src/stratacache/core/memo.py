"""A decorated function's memo: raw call arguments → the memory tier's entry for the call's key.

The memo lets a hit skip key building: one dict lookup, one deadline compare.
It must never be coarser than the key (two calls it takes for one must have
one key) and must keep nothing alive:

- A slot lives exactly as long as its entry: the memory tier kills an entry
  whenever it drops it (eviction, expiry, invalidation, ``clear()``), and the
  kill removes the slot, releasing the arguments it held.
- Arguments that are plain values (str, numbers, ``None``, tuples of them, ...)
  are held while the entry lives; any other object (an instance passed as
  ``self``, say) is held through a ``weakref.proxy``, which compares as the
  object itself (``==``; identity for plain objects), so the memo never keeps
  it alive, and its slot goes when it is collected. Calls with objects that
  can be neither are not memoized (they take the slow path).
- The memo has at most the memory tier's ``maxsize`` slots and, when the tier
  has ``max_bytes``, at most that many bytes of held arguments.

A memo of a one-parameter function compiled in its own shape (``single=True``,
see ``core.hitpath``) is keyed by the bare argument instead of a 1-tuple: no tuple
is built or hashed per hit. An argument held weakly is then keyed by a
``_WeakOne``, which compares as its referent in Python rather than in C (a slower
hit, still no slow path).

With an automatic key (equality rule, see ``core.canonical``) a slot matches
equal arguments, as a dict does. With a template or callable key, which may
render equal arguments differently (``1`` and ``True``), a hit also needs the
same argument types, and only arguments whose equal values of one type render
alike are memoized.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import uuid
import weakref
from collections.abc import Callable, Iterator
from decimal import Decimal
from fractions import Fraction
from typing import Any

from .entry import Entry

#: separates positional arguments from keyword names and values in a memo key
KW = object()
_EQUAL_ATOMS = frozenset(
    {str, bytes, int, float, bool, type(None), complex, Decimal, Fraction}
    | {dt.date, dt.datetime, dt.time, dt.timedelta, uuid.UUID}
)
_TYPED_ATOMS = frozenset({str, bytes, int, bool, type(None)})
_BASES = (int, float, str, bytes, tuple, frozenset)
_NOT_MEMOIZABLE = -1


def call_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """The memo key of a call, as the decorators build it inline on the hot path."""
    return args if not kwargs else (*args, KW, *kwargs, *kwargs.values())


def split_call_key(key: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``(args, kwargs)`` back from a memo key."""
    for cut, part in enumerate(key):
        if part is KW:
            n = (len(key) - cut - 1) // 2
            names, values = key[cut + 1 : cut + 1 + n], key[cut + 1 + n :]
            return key[:cut], dict(zip(names, values, strict=True))
    return key, {}


def hashable_call_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The memo key of a call (as the wrappers build it inline), or None when unhashable."""
    key = call_key(args, kwargs)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _immutable(value: Any) -> bool:
    """May ``value`` be matched later by identity? Frozen dataclasses and frozen pydantic
    models (nothing can change the key they render), and objects whose class defines
    ``__cache_key__`` (documented, like ``__hash__``, as fixed for the object's life)."""
    if getattr(type(value), "__cache_key__", None) is not None:
        return True
    params = getattr(type(value), "__dataclass_params__", None)
    if params is not None:
        return bool(params.frozen)
    config = getattr(type(value), "model_config", None)
    return isinstance(config, dict) and bool(config.get("frozen"))


class _WeakKey(tuple):  # type: ignore[type-arg]
    """A stored memo key with ``weakref.proxy`` where the call had objects, equal to the call.

    A hit compares the stored key with the call's tuple in C: a proxy compares as its
    referent, so nothing Python-level runs per hit, and nothing is kept alive. The hash
    is the call tuple's, taken once at insertion (proxies themselves are unhashable).
    """

    hash: int
    refs: dict[int, weakref.ref[Any]]

    def __new__(
        cls, key: tuple[Any, ...], weak: frozenset[int], on_dead: Callable[[Any], None]
    ) -> _WeakKey:
        self = super().__new__(
            cls, (weakref.proxy(v, on_dead) if i in weak else v for i, v in enumerate(key))
        )
        self.hash = hash(key)
        self.refs = {i: weakref.ref(key[i]) for i in weak}
        return self

    def __hash__(self) -> int:
        return self.hash

    def resolve(self) -> tuple[Any, ...] | None:
        """The arguments again, or None once a weakly held one was collected."""
        values = list(self)
        for i, ref in self.refs.items():
            values[i] = ref()
            if values[i] is None:
                return None
        return tuple(values)


class _WeakOne:
    """A single-argument memo key holding its object weakly, equal to that object."""

    __slots__ = ("hash", "ref")

    def __init__(self, value: Any, on_dead: Callable[[Any], None]) -> None:
        self.hash = hash(value)
        self.ref = weakref.ref(value, on_dead)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        if other is self:
            return True
        if isinstance(other, _WeakOne):
            other = other.ref()
        value = self.ref()
        if value is None:
            raise ReferenceError("the memoized argument was collected")
        return bool(value is other or value == other)

    def resolve(self) -> tuple[Any, ...] | None:
        """The arguments again, or None once the argument was collected."""
        value = self.ref()
        return None if value is None else (value,)


class CallMemo:
    """Raw call arguments → ``(entry, full key, argument types or None, ...)``, bounded."""

    __slots__ = (
        "__weakref__", "byte_limit", "bytes", "data", "limit", "lookup", "single", "top", "typed",
    )  # fmt: skip

    def __init__(self, top: Any, typed: bool, single: bool = False) -> None:
        usable = callable(getattr(top, "peek", None)) and hasattr(top, "touch")
        self.top = top if usable else None
        self.limit = max(1, int(getattr(top, "maxsize", 10_000)))
        limit = getattr(top, "max_bytes", None)
        self.byte_limit: int | None = int(limit) if limit is not None else None
        self.bytes = 0
        self.typed = typed
        #: keys are the bare argument of a one-parameter function (not a 1-tuple)
        self.single = single
        self.data: dict[Any, tuple[Any, ...]] = {}
        #: the hot path's lookup: ``dict.get`` itself, or for typed memos a check of types too
        self.lookup: Callable[[Any], tuple[Any, ...] | None] = self.data.get
        if typed:
            self.lookup = self._typed_single_lookup if single else self._typed_lookup

    def _typed_lookup(self, key: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The slot for ``key`` if its arguments have the types it was stored with."""
        slot = self.data.get(key)
        if slot is None:
            return None
        types = slot[2]  # unrolled for the usual one or two arguments: this is the hot path
        size = len(types)
        if size == 1:
            return slot if types[0] is type(key[0]) else None
        if size == 2:
            return slot if types[0] is type(key[0]) and types[1] is type(key[1]) else None
        return slot if types == tuple(map(type, key)) else None

    def _typed_single_lookup(self, key: Any) -> tuple[Any, ...] | None:
        """``_typed_lookup`` for a bare single argument."""
        slot = self.data.get(key)
        return slot if slot is not None and slot[2][0] is type(key) else None

    def __len__(self) -> int:
        return len(self.data)

    def remember(self, key: Any, fkey: str, trusted: bool) -> None:
        """Memoize the memory tier's entry for ``fkey`` under the call ``key`` (a tuple, or
        the bare argument in a ``single`` memo; None: not memoizable)."""
        if key is None or self.top is None or not trusted:
            return
        entry: Entry | None = self.top.peek(fkey)
        if entry is None or not entry.alive:
            return
        call = (key,) if self.single else key
        stored, size = self._stored(call)
        if stored is None or (self.byte_limit is not None and size > self.byte_limit):
            return
        types = tuple(map(type, call)) if self.typed else None
        self.drop_call(key)
        me = weakref.ref(self)
        data = self.data

        def watcher() -> None:  # the entry died: drop the slot (the memo may be gone)
            memo = me()
            if memo is not None:
                memo.drop(stored)

        try:
            data[stored] = (entry, fkey, types, stored, size, watcher)
        except ReferenceError:  # compared with a colliding key whose object just died
            return
        self.bytes += size
        if entry.watchers is None:
            entry.watchers = []
        entry.watchers.append(watcher)
        if not entry.alive:  # killed by another thread meanwhile
            self.drop(stored)
        self._trim()

    def drop(self, stored: Any) -> None:
        """Remove the slot stored under ``stored`` (if it is still that one)."""
        try:  # a dead proxy in a colliding key raises ReferenceError when compared
            slot = self.data.get(stored)
            if slot is None or slot[3] is not stored:
                return
            self.data.pop(stored, None)
        except ReferenceError:
            return
        self._release(slot)

    def drop_call(self, key: Any) -> None:
        """Remove the slot an equal call uses, if any."""
        try:
            slot = self.data.pop(key, None)
        except (TypeError, ReferenceError):
            return
        if slot is not None:
            self._release(slot)

    def clear(self) -> None:
        """Drop every slot."""
        for stored in list(self.data):
            self.drop(stored)

    def calls(self) -> Iterator[tuple[tuple[Any, ...], dict[str, Any], str, Entry]]:
        """The memoized calls whose entry is alive: ``(args, kwargs, full key, entry)``."""
        for stored, slot in list(self.data.items()):
            entry = slot[0]
            if not entry.alive:
                continue
            if isinstance(stored, (_WeakKey, _WeakOne)):
                key = stored.resolve()
            else:
                key = (stored,) if self.single else stored
            if key is not None:
                args, kwargs = split_call_key(key)
                yield args, kwargs, slot[1], entry

    def _release(self, slot: tuple[Any, ...]) -> None:
        self.bytes -= slot[4]
        watchers = slot[0].watchers
        if watchers is not None:
            with contextlib.suppress(ValueError):  # already called and dropped
                watchers.remove(slot[5])

    def _trim(self) -> None:
        data = self.data
        while data and (
            len(data) > self.limit or (self.byte_limit is not None and self.bytes > self.byte_limit)
        ):
            try:
                oldest = next(iter(data))
            except (StopIteration, RuntimeError):  # emptied or changed by another thread
                return
            self.drop(oldest)

    def _stored(self, key: tuple[Any, ...]) -> tuple[Any, int]:
        """The key to store (weak where needed) and the bytes of arguments it holds."""
        size = 0
        weak = set()
        for i, value in enumerate(key):
            held = self._plain(value)
            if held != _NOT_MEMOIZABLE:
                size += held
                continue
            if not _immutable(value):
                # a mutable object (``self`` of a plain class, a non-frozen dataclass) may
                # change after this call while the memo still matched it by identity: the
                # key it would render now can differ, so such calls take the slow path
                return None, 0
            try:
                weakref.ref(value)
            except TypeError:
                return None, 0
            weak.add(i)
        if not weak:
            return (key[0] if self.single else key), size

        def on_dead(_ref: Any) -> None:
            self_ = me()
            if self_ is not None:
                self_.drop(stored)

        me = weakref.ref(self)
        stored: Any = (
            _WeakOne(key[0], on_dead) if self.single else _WeakKey(key, frozenset(weak), on_dead)
        )
        return stored, size

    def _plain(self, value: Any) -> int:
        """Bytes held if ``value`` may be held strongly and matched by equality, else -1."""
        kind = type(value)
        if value is KW or isinstance(value, (type, enum.Enum)):
            return 0
        if (kind is dt.datetime or kind is dt.time) and value.tzinfo is not None:
            # equal aware values across a DST fold are different instants (and keys)
            return _NOT_MEMOIZABLE
        if self.typed:
            if kind is float and value != 0 and value == value:  # -0.0 and 0.0 render apart
                return 32
            if kind not in _TYPED_ATOMS:
                return _NOT_MEMOIZABLE
            return 32 + len(value) if kind is str or kind is bytes else 32
        if kind not in _EQUAL_ATOMS:
            base: Any = next((b for b in _BASES if isinstance(value, b)), None)
            if base is None or kind.__eq__ is not base.__eq__ or kind.__hash__ is not base.__hash__:
                return _NOT_MEMOIZABLE  # a subclass whose equality we cannot vouch for
        if isinstance(value, (tuple, frozenset)):
            total = 56
            for item in value:
                held = self._plain(item)
                if held == _NOT_MEMOIZABLE:
                    return _NOT_MEMOIZABLE
                total += 8 + held
            return total
        if isinstance(value, (str, bytes)):
            return 50 + len(value)
        return 32

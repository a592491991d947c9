"""A cached function defined in a class binds its instance (or class) for its helpers too.

Why: a plain function reached through an instance becomes a bound method, whose
attributes are the function's own, unbound: ``repo.find.invalidate(1)`` would
key the call ``find(1)`` with ``self=1``, outdating another entry or failing.
A cached function defined in a class body is therefore a ``CachedMember``
descriptor: through an instance (or, for a classmethod, through the class) it
gives a ``BoundCall``, which passes the instance first to the call and to every
per-call helper (``invalidate``, ``refresh``, ``key``); through the class it
gives the function itself, whose helpers take the instance first as its calls do.

A model class that inspects its body (pydantic v2 takes every attribute without
an annotation for a field and refuses it) leaves method wrappers from
``functools`` alone (``lru_cache``, ``cached_property``, ``partialmethod``): a
``CachedMember`` is one of those, a method wrapper, so its class says it comes
from there too, and a cached method needs no ``ignored_types`` in the model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

#: helpers of a cached function that take the call's arguments
PER_CALL_HELPERS = frozenset({"invalidate", "refresh", "key"})


class BoundCall(functools.partial):  # type: ignore[type-arg]
    """A cached function with its instance or class bound, for the call and its helpers."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.func, name)
        if name in PER_CALL_HELPERS:
            return functools.partial(attribute, *self.args)
        return attribute


class CachedMember:
    """What a cached function defined in a class body becomes: it binds like a method.

    With ``bind_class`` (a cached ``classmethod``) the class is bound, whether the
    member is reached through the class or an instance.
    """

    __slots__ = ("bind_class", "fn")

    def __init__(self, fn: Callable[..., Any], *, bind_class: bool = False) -> None:
        self.fn = fn
        self.bind_class = bind_class

    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        if self.bind_class:
            return BoundCall(self.fn, owner if owner is not None else type(instance))
        if instance is None:
            return self.fn
        return BoundCall(self.fn, instance)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Called unbound (under ``staticmethod``, say): the function itself."""
        return self.fn(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fn, name)

    def __repr__(self) -> str:
        return f"<cached member {getattr(self.fn, '__qualname__', self.fn)!r}>"


# pydantic's model namespace check (``inspect_namespace``) skips any value whose class
# module is "functools": the one rule that lets method wrappers through without user
# config. Only this descriptor says so; its instances are never pickled or keyed.
CachedMember.__module__ = "functools"


def defined_in_class(fn: Callable[..., Any]) -> bool:
    """Was ``fn`` defined in a class body (``Repo.find``, not ``f`` nor ``g.<locals>.f``)?"""
    parts = getattr(fn, "__qualname__", "").split(".")
    return len(parts) > 1 and parts[-2] != "<locals>"

"""Key spaces of automatic keys: two distinct functions never share one.

An automatic key starts with the function's ``module.qualname`` and digests
what its closures captured, so closures made by one factory with different
values (``make_scaler(2)``, ``make_scaler(3)``) and wrappers of different
functions (a helper decorator without ``functools.wraps``) already get keys of
their own. What is left are functions that share a name and captured values
and still differ: different code under one name (two lambdas; nested functions
of one name), or captured objects with no stable representation (a connection,
a client) that differ. The second such function decorated on one cache is
refused with a ``ConfigError`` asking for ``name=`` or ``key=``; a function
decorated again (same code, same captured objects) is welcome.

A module-level function (no ``<locals>``/``<lambda>`` in its name) that is
redefined (a reloaded module, a notebook cell run again) continues its key
space, as with every cache keyed by function name.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Callable
from typing import Any

from .errors import ConfigError


class _Claim:
    """What one function claimed a key space with: its code and captured objects (weakly)."""

    __slots__ = ("code", "objects")

    def __init__(self, code: object, objects: tuple[object, ...]) -> None:
        self.code = code
        self.objects = tuple(_hold(o) for o in objects)

    def same(self, code: object, objects: tuple[object, ...]) -> bool:
        """Whether ``code``/``objects`` describe the function that made this claim."""
        if code != self.code or len(objects) != len(self.objects):
            return False
        return all(_held(h) is o for h, o in zip(self.objects, objects, strict=True))


def _hold(obj: object) -> Callable[[], object]:
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj


def _held(holder: Callable[[], object]) -> object:
    return holder()


class KeySpaces:
    """The automatic key spaces claimed on one cache."""

    def __init__(self) -> None:
        self._claims: dict[tuple[str, bytes], _Claim] = {}

    def claim(
        self,
        name: str,
        identity: bytes,
        captured_unknown: tuple[object, ...],
        fn: Callable[..., Any],
        explicit: bool,
    ) -> None:
        """Record that ``fn`` keys its calls under ``name``/``identity``; refuse a second function.

        Raises:
            ConfigError: another function already claimed this key space and nothing stable
                tells the two apart.
        """
        if not explicit and "<" not in name and not captured_unknown:
            return  # a module-level function: its name is unique in its module
        code = getattr(fn, "__code__", None)
        claims = self._claims
        space = (name, hashlib.blake2b(identity, digest_size=16).digest())
        existing = claims.get(space)
        if existing is None:
            claims[space] = _Claim(code, captured_unknown)
            return
        if existing.same(code, captured_unknown):
            return
        if captured_unknown:
            kinds = ", ".join(sorted({type(o).__name__ for o in captured_unknown}))
            why = (
                f"it captures objects with no stable representation ({kinds}), so its keys "
                "cannot tell it apart from the function decorated before"
            )
        else:
            why = "another function with this qualified name was decorated on this cache"
        raise ConfigError(
            f"@cached: {name} would share its automatic keys with another function: {why}. "
            f'Give it a key space of its own with name="..." or a key="..." template'
            + (" (or define __cache_key__ on their class)" if captured_unknown else "")
        )

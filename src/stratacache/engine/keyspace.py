"""``KeySpace``: a cache's namespace and its generation, turned into full keys.

Namespace flush is O(1): the namespace *generation* is folded into every full
key (``ns:key`` at generation 0, ``ns:~gN:key`` after), so bumping it makes
every old entry unreachable at once. The key space is the one place that
knows this; the read path, the invalidator and the front doors ask it.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..core.errors import CacheKeyError
from ..core.keys import validate_key

#: relative keys starting with this are generation-qualified (``~g3:user:1``); users' keys may not
GEN_MARK = "~g"


def generation_prefix(namespace: str, generation: int) -> str:
    """The start of every full key of ``namespace`` at ``generation``."""
    return f"{namespace}:" if generation == 0 else f"{namespace}:{GEN_MARK}{generation}:"


def check_relative(key: str) -> str:
    """Reject user keys that could collide with a later generation's keys."""
    if key[:2] == GEN_MARK:
        raise CacheKeyError(f"cache keys may not start with {GEN_MARK!r} (reserved): {key!r}")
    return key


class KeySpace:
    """Full keys (``namespace:[~gN:]key``) of one cache; the generation moves forward only."""

    __slots__ = ("generation", "max_key_length", "namespace", "prefix")

    def __init__(self, namespace: str, max_key_length: int) -> None:
        self.namespace = namespace
        self.max_key_length = max_key_length
        #: current namespace generation (0 until the first ``flush_namespace``)
        self.generation = 0
        #: the start of every full key at the current generation
        self.prefix = namespace + ":"

    def full_key(self, key: str) -> str:
        """``namespace:key`` at the current generation, after checking ``key``."""
        return self.prefix + check_relative(validate_key(key, self.max_key_length))

    def full_keys(self, keys: Iterable[str]) -> dict[str, str]:
        """``{full key: key}`` for a batch, each key checked as ``full_key`` checks it (the
        common case inline: a batch read pays one loop, not two calls per key)."""
        prefix, limit, found = self.prefix, self.max_key_length, {}
        for key in keys:
            if (
                type(key) is not str
                or not key
                or len(key) > limit
                or key[:2] == GEN_MARK
                or not key.isascii()  # non-ASCII keys are checked for what no tier can store
                or "\x00" in key
            ):
                found[self.full_key(key)] = key  # raises CacheKeyError, saying why
            else:
                found[prefix + key] = key
        return found

    def relative_key(self, fkey: str) -> str:
        """The key ``invalidate`` takes for a full key (generation-qualified if it was flushed)."""
        return fkey[len(self.namespace) + 1 :]

    def invalidation_key(self, key: str) -> str:
        """Full key of a key given to ``invalidate``; ``~g3:k`` forms are taken as they are."""
        if isinstance(key, str) and key[:2] == GEN_MARK:
            return f"{self.namespace}:{validate_key(key, self.max_key_length)}"
        return self.full_key(key)

    def full_prefix(self, prefix: str) -> str:
        """Full-key prefix of a relative prefix given to ``invalidate(prefix=...)``."""
        return self.prefix + validate_key(prefix, self.max_key_length)

    def advance(self, generation: int) -> bool:
        """Adopt ``generation`` if it is newer; True when the key space moved."""
        if generation <= self.generation:
            return False
        self.generation = generation
        self.prefix = generation_prefix(self.namespace, generation)
        return True


__all__ = ["GEN_MARK", "KeySpace", "check_relative", "generation_prefix"]

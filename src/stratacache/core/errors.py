"""The one exception tree of stratacache.

::

    StratacacheError
    ├── ConfigError            bad configuration, raised at construction time
    ├── CacheKeyError          a key that is empty, too long, not a string, or
    │                          arguments that cannot make a stable key
    ├── SerializationError     a value the serializer cannot encode
    │   └── DeserializationError   bytes that do not decode (a miss, never raised to callers)
    │       └── MovedValueError    a valid entry stored under another key than its own (a miss)
    ├── TierError              a tier failed; wraps the driver's error (never raised
    │   │                      into a caller of the cache's read/write API)
    │   └── KnownOutageError   a part the tier knows to be unavailable refused the call
    │       │                  at once: counted, but not a failure of the whole tier (its
    │       │                  breaker stays closed; the tier logs the state change once)
    │       ├── NodeDownError      the cluster node of these keys is down: a miss for them
    │       └── FileLockedError    a SQLite file's write lock has been held by another
    │                              connection for long: the write was tried without waiting
    ├── MissingKeyError        (also a KeyError) ``incr``/``decr`` with ``initial=None``
    │                          on a key that holds nothing
    ├── WrongTypeError         (also a TypeError) a stored value or a loader's result of
    │                          the wrong type for the operation (``incr`` on a string …)
    └── NotStartedError        (also a RuntimeError) a component used before ``start()``

Each error also derives from the built-in exception callers would expect
(``ValueError``, ``TypeError``, ``KeyError`` …), so ``except ValueError`` keeps working.

There is no lock-timeout error: a bounded wait for another process's recompute
(``RedisLock(wait_timeout=...)``) never raises; when it runs out the caller loads the
value itself (counted as ``lock_fallbacks``), because a late value beats no value and
the no-stale-set guarantee holds either way.
"""

from __future__ import annotations


class StratacacheError(Exception):
    """Root of every error stratacache raises on purpose."""


class ConfigError(StratacacheError, ValueError):
    """A configuration value is invalid (raised where the object is built)."""


class CacheKeyError(StratacacheError, ValueError):
    """A key (or the arguments it is built from) is not usable as a cache key."""


class SerializationError(StratacacheError, TypeError):
    """A value cannot be encoded; the message names the offending type."""


class DeserializationError(SerializationError):
    """Stored bytes do not decode: corrupt, foreign, tampered or from another version."""


class MovedValueError(DeserializationError):
    """An entry sealed for one key was found under another (copied or moved in storage)."""


class TierError(StratacacheError):
    """A tier operation failed; ``__cause__`` holds the driver's own exception."""

    def __init__(self, tier: str, operation: str, cause: BaseException | None = None) -> None:
        self.tier = tier
        self.operation = operation
        detail = f": {cause!r}" if cause is not None else ""
        super().__init__(f"tier {tier!r} failed during {operation}{detail}")


class MissingKeyError(StratacacheError, KeyError):
    """An operation that needs an existing entry (``incr(..., initial=None)``) found none."""


class WrongTypeError(StratacacheError, TypeError):
    """A stored value or a loader's result has the wrong type for the operation."""


class NotStartedError(StratacacheError, RuntimeError):
    """A component (a bus, a lock) was used before its ``start()``."""


class KnownOutageError(TierError):
    """A part of the tier it already knows to be unavailable refused the call at once: the
    engine counts it, but neither feeds the tier's breaker nor logs it per call."""


class NodeDownError(KnownOutageError):
    """The cluster node serving the keys of a call is known to be down; the tier is fine."""

    def __init__(self, tier: str, operation: str, node: str) -> None:
        super().__init__(tier, operation, ConnectionError(f"cluster node {node} is down"))
        self.node = node


class FileLockedError(KnownOutageError):
    """Another connection has held a SQLite file's write lock for longer than the tier's
    ``lock_timeout``: this write was tried without waiting and found it still held. Reads
    of the file keep answering, so the tier is fine (its breaker stays closed)."""

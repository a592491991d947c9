"""The ``Tier`` protocol: what the engine asks of every storage level.

A tier stores and fetches ``Entry`` objects under full (namespaced) keys. It
knows nothing of other tiers, decorators or HTTP. Tiers that keep bytes use
the ``EntryCodec`` handed to them in ``TierContext``; a value that does not
decode is a miss, never an exception.

Invalidation contract:
- ``delete``/``delete_many``/``delete_prefix``/``clear`` remove entries and
  *void leases*: a ``set(..., lease=...)`` whose lease was taken before the
  removal must be refused (the "no stale set" rule).
- ``invalidate_tags`` makes every entry carrying one of the tags a miss, at a
  cost independent of how many entries carry it, and voids leases on them.
- ``get`` never returns an entry outdated by a tag invalidation.

A tier may also offer the ``SyncTier`` methods so synchronous callers reach
it without an event-loop hop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .clock import Clock, SystemClock
from .codec import EntryCodec
from .entry import Entry


@dataclass(slots=True)
class TierContext:
    """What the engine hands each tier at start: its namespace, codec and clock."""

    namespace: str
    codec: EntryCodec = field(default_factory=EntryCodec)
    clock: Clock = field(default_factory=SystemClock)


@runtime_checkable
class Tier(Protocol):
    """One storage level of the cache (async API)."""

    #: short name used in stats, metrics and logs ("memory", "redis", "sql" ...)
    name: str
    #: upper bound in seconds on how long this tier keeps an entry (None: entry's own TTL)
    ttl: float | None
    #: True when other processes see this tier's data (Redis, SQL); False for in-process
    shared: bool

    async def start(self, context: TierContext) -> None:
        """Connect and prepare (idempotent)."""

    async def close(self) -> None:
        """Release connections (idempotent)."""

    async def get(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        """The live entry under ``key``, or None.

        ``tags`` is a hint: the tags the caller expects the entry to carry (``None``:
        unknown). A tier may use it to fetch tag versions in the same round trip.
        """

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        """The live entries among ``keys``, in one round trip where the storage allows."""

    async def lease(self, key: str, tags: Sequence[str]) -> object | None:
        """A token to pass to ``set`` so a removal in between makes the set a no-op."""

    async def set(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        """Store ``entry``; False when refused because ``lease`` was voided."""

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        """Store several entries, in one round trip where the storage allows."""

    async def delete_many(self, keys: Sequence[str]) -> int:
        """Remove ``keys``; returns how many existed (where known)."""

    async def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with ``prefix`` (within this tier's namespace)."""

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        """Outdate every entry carrying any of ``tags``."""

    async def clear(self) -> None:
        """Remove every entry of this tier's namespace (never other data)."""


@runtime_checkable
class SyncTier(Protocol):
    """The blocking twin of ``Tier``'s data path, for ``cache.sync`` without a loop hop."""

    def get_sync(self, key: str, tags: Sequence[str] | None = None) -> Entry | None: ...

    def get_many_sync(self, keys: Sequence[str]) -> dict[str, Entry]: ...

    def lease_sync(self, key: str, tags: Sequence[str]) -> object | None: ...

    def set_sync(self, key: str, entry: Entry, lease: object | None = None) -> bool: ...

    def set_many_sync(self, entries: Mapping[str, Entry]) -> None: ...

    def delete_many_sync(self, keys: Sequence[str]) -> int: ...

    def delete_prefix_sync(self, prefix: str) -> int: ...

    def invalidate_tags_sync(self, tags: Sequence[str]) -> None: ...

    def clear_sync(self) -> None: ...


@runtime_checkable
class ClaimingTier(Protocol):
    """Optional ability of an in-process tier: keep racing plain writes from leaving it apart.

    Two writes of one key go bottom-up and may reach the tiers below in one order and this
    tier in the other. So a plain write first claims its keys here, then writes the tiers
    below, then passes the claim to ``set``/``set_many``: a claim is refused (and the key
    dropped) once another write claimed or stored the key, or anything removed or
    outdated it, since it was taken. The tier then holds what the tiers below hold, or
    nothing, once the racing writes have ended. A load claims such a tier instead of
    leasing it: a claim kept records like an overwrite, so a read's backfill of an older
    value, leased before the load's store, is refused. Tiers with ``SyncTier`` offer the
    same methods with a ``_sync`` suffix.
    """

    async def claim(self, key: str) -> object:
        """A claim on ``key``, passed as ``lease`` to ``set`` after the lower writes."""

    async def claim_many(self, keys: Sequence[str]) -> object:
        """One claim on ``keys``, passed as ``claim`` to ``set_many``."""

    async def release(self, key: str, claim: object) -> None:
        """Let go of ``claim`` on ``key``: its write will not store here (admission declined)."""

    async def set_many(self, entries: Mapping[str, Entry], claim: object | None = None) -> None:
        """``Tier.set_many``; with ``claim``, each entry is stored or dropped as ``set`` would."""


@runtime_checkable
class KeyScanner(Protocol):
    """Optional tier ability: list stored keys page by page (for operators, never the hot path)."""

    async def scan_keys(self, prefix: str, cursor: str, count: int) -> tuple[list[str], str]:
        """About ``count`` full keys starting with ``prefix`` after ``cursor``.

        Args:
            prefix: full-key prefix (namespace included).
            cursor: ``""`` for the first page, then the cursor the previous page returned.
            count: the page size asked for (a tier may return a few more or fewer).

        Returns:
            ``(keys, next_cursor)``; ``next_cursor`` is ``""`` once every key was listed.
            A key may show up on two pages when the tier is written to meanwhile.
        """

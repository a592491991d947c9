"""``MemoryTier``: the in-process L1, bounded by entries and bytes, W-TinyLFU (default) or LRU.

Entries are kept as Python objects (no decoding on a hit), so a cached
mutable value is shared with callers, as with ``functools.lru_cache``. The
engine encodes every value once when it is set (and hands the bytes to the
tiers below), so this tier only ever holds values that every other tier gives
back with the same type: what Redis or SQL would change is refused here too.
Removing an entry for any reason (eviction, expiry, delete, tag, clear)
calls ``Entry.kill()``, which is how decorators holding a direct reference
learn, without a lookup, that it is gone.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..core.durations import check_optional
from ..core.entry import Entry
from ..core.errors import ConfigError
from ..core.tier import TierContext
from .lru import LRUStore
from .tinylfu import TinyLFUStore

_ENTRY_OVERHEAD = 200  # rough bytes of an Entry object and its dict slot, for the byte bound
_LOG_SIZE = 4096
#: claims kept at most; past it they are all let go (the writes still holding one then drop
#: their key instead of storing it): only a write that never ended leaves its claim behind
_MAX_CLAIMS = 4096


class Claim:
    """A plain write's hold on keys, taken before the tiers below are written (``claim``).

    Its store is accepted only if, since the claim, no other write claimed or stored the
    key and nothing removed or outdated it: then no write of the key reached the tiers
    below after this one did, and memory may hold its value.
    """

    __slots__ = ("seq",)

    def __init__(self, seq: int) -> None:
        self.seq = seq  # the invalidation log's position when the claim was taken

    def __repr__(self) -> str:
        return f"Claim({self.seq})"


class MemoryTier:
    """In-process tier: ``maxsize`` entries, optionally ``max_bytes``, TTL cap ``ttl``.

    ``policy`` picks what stays when the tier is full: ``"tinylfu"`` (default, W-TinyLFU:
    admits a new key only if it is read more often than what it would displace, see
    ``tiers/tinylfu.py``) or ``"lru"`` (drops the least recently used key). Once full, a
    W-TinyLFU tier also declines a backfill (a copy from a tier below) of a key read less
    often than the one it would displace: the tier below keeps serving it.
    """

    shared = False

    def __init__(
        self,
        maxsize: int = 10_000,
        ttl: float | None = None,
        *,
        max_bytes: int | None = None,
        name: str = "memory",
        policy: str = "tinylfu",
    ) -> None:
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ConfigError(f"MemoryTier maxsize must be a positive int, not {maxsize!r}")
        ttl = check_optional("MemoryTier ttl", ttl)
        if max_bytes is not None and max_bytes < 1:
            raise ConfigError(f"MemoryTier max_bytes must be positive, not {max_bytes!r}")
        if policy not in ("tinylfu", "lru"):
            raise ConfigError(f"MemoryTier policy must be 'tinylfu' or 'lru', not {policy!r}")
        self.name = name
        self.policy = policy
        self.ttl = ttl
        self.maxsize = maxsize
        self.max_bytes = max_bytes
        self.evictions = 0
        #: called with the key of every entry evicted to stay within the bounds (set by the engine)
        self.on_evict: Callable[[str], None] | None = None
        self._lock = threading.RLock()
        bound, sizeof = (maxsize, None) if max_bytes is None else (max_bytes, _entry_bytes)
        self._store: LRUStore | TinyLFUStore
        if policy == "lru":
            self._store = LRUStore(bound, sizeof, maxsize, self._evicted)
        else:
            self._store = TinyLFUStore(bound, sizeof, maxsize, self._evicted)
        #: decorators call this on a fast-path hit to count the read (a C method, no lock)
        self.touch = self._store.touch
        #: ``admits(key)``: is a copy of ``key`` from a tier below (a backfill) worth keeping
        #: here? False: the engine skips it, the tier below still holds it. None: always (LRU)
        self.admits: Callable[[str], bool] | None = (
            self._store.policy.admits if isinstance(self._store, TinyLFUStore) else None
        )
        self._tags: dict[str, set[str]] = {}
        self._claims: dict[str, Claim] = {}
        self._seq = 0
        self._log: deque[tuple[int, str, tuple[str, ...]]] = deque(maxlen=_LOG_SIZE)
        self._clock: Any = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self, context: TierContext) -> None:
        self._clock = context.clock

    async def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._store)

    @property
    def currsize(self) -> float:
        """Current size in the unit of the bound (entries, or bytes when ``max_bytes`` is set)."""
        return float(self._store.currsize)

    # -- sync data path (also what the async methods run) ------------------------------------
    def get_sync(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        with self._lock:
            entry: Entry | None = self._store.get(key)  # touches LRU order
            if entry is not None and entry.is_gone(self._now()):
                self._remove(key)
                return None
            return entry

    def peek(self, key: str) -> Entry | None:
        """The stored entry object itself, without counting a read or checking expiry."""
        entry: Entry | None = self._store.peek(key)
        return entry

    def get_many_sync(self, keys: Sequence[str]) -> dict[str, Entry]:
        found = {}
        for key in keys:
            entry = self.get_sync(key)
            if entry is not None:
                found[key] = entry
        return found

    def lease_sync(self, key: str, tags: Sequence[str]) -> object | None:
        return self._seq

    def claim_sync(self, key: str) -> Claim:
        """Claim ``key`` for a plain write about to go to the tiers below (see ``Claim``).

        Writes of one key can reach the tiers below in one order and this tier in the
        other; a write passes its claim to ``set`` here after the lower writes, and a
        refused claim drops the key, so this tier never keeps a value the tiers below
        had overwritten meanwhile: it holds theirs or nothing.
        """
        with self._lock:
            claims = self._claims
            if len(claims) >= _MAX_CLAIMS:
                claims.clear()
            claim = claims[key] = Claim(self._seq)
            return claim

    def claim_many_sync(self, keys: Sequence[str]) -> Claim:
        """One claim on several keys (``set_many``'s)."""
        with self._lock:
            claims = self._claims
            if len(claims) + len(keys) > _MAX_CLAIMS:
                claims.clear()
            claim = Claim(self._seq)
            for key in keys:
                claims[key] = claim
            return claim

    def release_sync(self, key: str, claim: Claim) -> None:
        """Let go of ``claim`` on ``key``: its write will not store here."""
        with self._lock:
            if self._claims.get(key) is claim:
                del self._claims[key]

    def set_sync(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        """Store ``entry``. ``lease``: None (an overwrite), a lease (refused once voided) or a
        ``Claim`` (refused, and the key dropped, once another write came between)."""
        with self._lock:
            if isinstance(lease, int):  # a read's backfill or a load's write
                if self._voided(lease, key, entry.tags):
                    return False
                if self._claims:  # a plain write still between its tiers must not cover it
                    self._claims.pop(key, None)
            elif isinstance(lease, Claim) and not self._claimed(lease, key, entry.tags):
                self._record("keys", (key,))  # the writes claiming it meanwhile drop it too
                self._remove(key)
                return False
            else:  # an overwrite (or a claim kept): loads leased before must not store over it
                self._record("keys", (key,))
            return self._put(key, entry)

    def set_many_sync(self, entries: Mapping[str, Entry], claim: Claim | None = None) -> None:
        """Store several entries; with ``claim`` (``claim_many``), each as ``set`` would."""
        with self._lock:
            if claim is None:
                for key, entry in entries.items():
                    self.set_sync(key, entry)
                return
            kept = [k for k, e in entries.items() if self._claimed(claim, k, e.tags)]
            self._record("keys", tuple(entries))
            for key in entries:
                self._remove(key)
            for key in kept:
                self._put(key, entries[key])

    def _claimed(self, claim: Claim, key: str, tags: tuple[str, ...]) -> bool:
        """Does ``claim`` still hold ``key`` (let go of it either way)?"""
        claims = self._claims
        if claims.get(key) is not claim:
            return False
        del claims[key]
        return not self._voided(claim.seq, key, tags)

    def _put(self, key: str, entry: Entry) -> bool:
        self._remove(key)
        try:
            self._store[key] = entry
        except ValueError:  # larger than the whole byte budget: keep nothing under key
            self._store.order.pop(key, None)
            return False
        for tag in entry.tags:
            self._tags.setdefault(tag, set()).add(key)
        return True

    def delete_many_sync(self, keys: Sequence[str]) -> int:
        with self._lock:
            self._record("keys", tuple(keys))
            if self._claims:  # claims taken before are refused by the record: let them go
                for key in keys:
                    self._claims.pop(key, None)
            return sum(self._remove(key) for key in keys)

    def delete_prefix_sync(self, prefix: str) -> int:
        with self._lock:
            self._record("prefix", (prefix,))
            # list() copies in C: decorators touch the order without the lock meanwhile
            doomed = [k for k in list(self._store.order) if k.startswith(prefix)]
            return sum(self._remove(key) for key in doomed)

    def invalidate_tags_sync(self, tags: Sequence[str]) -> None:
        with self._lock:
            self._record("tags", tuple(tags))
            for tag in tags:
                for key in list(self._tags.get(tag, ())):
                    self._remove(key)

    def keep_recent_sync(self, since: float, bound: float) -> int:
        """Remove entries created before ``since``; cap the others' fast-path deadline at
        ``created + bound`` (the engine's degraded mode). Returns how many were removed."""
        with self._lock:
            removed = 0
            for key in list(self._store.order):
                entry = self.peek(key)
                if entry is None:
                    continue
                if entry.created < since:
                    removed += self._remove(key)
                elif entry.deadline > entry.created + bound:
                    entry.deadline = entry.created + bound
            return removed

    def clear_sync(self) -> None:
        with self._lock:
            self._record("all", ())
            for key in list(self._store.order):
                self._remove(key)
            self._tags.clear()
            self._claims.clear()

    # -- async API: the same operations, no I/O to wait for ----------------------------------
    async def get(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        return self.get_sync(key)

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        return self.get_many_sync(keys)

    async def lease(self, key: str, tags: Sequence[str]) -> object | None:
        return self._seq

    async def claim(self, key: str) -> Claim:
        return self.claim_sync(key)

    async def claim_many(self, keys: Sequence[str]) -> Claim:
        return self.claim_many_sync(keys)

    async def release(self, key: str, claim: Claim) -> None:
        self.release_sync(key, claim)

    async def set(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        return self.set_sync(key, entry, lease)

    async def set_many(self, entries: Mapping[str, Entry], claim: Claim | None = None) -> None:
        self.set_many_sync(entries, claim)

    async def delete_many(self, keys: Sequence[str]) -> int:
        return self.delete_many_sync(keys)

    async def delete_prefix(self, prefix: str) -> int:
        return self.delete_prefix_sync(prefix)

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        self.invalidate_tags_sync(tags)

    async def clear(self) -> None:
        self.clear_sync()

    async def scan_keys(self, prefix: str, cursor: str, count: int) -> tuple[list[str], str]:
        """A page of keys in sorted order after ``cursor`` (see ``core.tier.KeyScanner``)."""
        with self._lock:
            keys = sorted(k for k in list(self._store.order) if k.startswith(prefix) and k > cursor)
        page = keys[:count]
        return page, page[-1] if len(keys) > count else ""

    def locked(self) -> threading.RLock:
        """The tier's reentrant lock: hold it to read-modify-write an entry atomically."""
        return self._lock

    def after_fork(self) -> None:
        """In a forked child: a fresh lock (a parent thread may have held the old one)."""
        self._lock = threading.RLock()

    # -- internals ---------------------------------------------------------------------------
    def _now(self) -> float:
        return float(self._clock.time()) if self._clock is not None else _wall()

    def _remove(self, key: str) -> bool:
        entry = self._store.pop(key, None)
        if entry is None:
            return False
        self._store.order.pop(key, None)
        self._forget(key, entry)
        return True

    def _evicted(self, key: str, entry: Entry) -> None:
        self._forget(key, entry)
        self.evictions += 1
        if self.on_evict is not None:
            self.on_evict(key)

    def _forget(self, key: str, entry: Entry) -> None:
        entry.kill()
        for tag in entry.tags:
            keys = self._tags.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tags[tag]

    def _record(self, kind: str, items: tuple[str, ...]) -> None:
        self._seq += 1
        self._log.append((self._seq, kind, items))

    def _voided(self, lease: int, key: str, tags: tuple[str, ...]) -> bool:
        """Was anything matching ``key``/``tags`` invalidated after ``lease`` was taken?"""
        if lease == self._seq:
            return False
        if not self._log or self._log[0][0] > lease + 1:
            return True  # the log no longer reaches back to the lease: refuse to be safe
        for seq, kind, items in reversed(self._log):
            if seq <= lease:
                break
            if (
                kind == "all"
                or (kind == "keys" and key in items)
                or (kind == "prefix" and key.startswith(items[0]))
                or (kind == "tags" and not set(items).isdisjoint(tags))
            ):
                return True
        return False


def _entry_bytes(entry: Entry) -> int:
    return entry.size + _ENTRY_OVERHEAD


def _wall() -> float:
    import time

    return time.time()

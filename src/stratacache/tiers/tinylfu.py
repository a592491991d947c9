"""W-TinyLFU: the memory tier's default admission and eviction policy.

A new key enters a small LRU *window*; what falls out of the window competes
for a place in the *main* area (a segmented LRU: probation, then protected once
read again) against main's least recently used key, and the one seen more
often recently wins (a tie keeps the resident key, which is what makes a
one-off scan harmless). "How often" comes from a count-min sketch of every
read, hit or miss: 4 counters per key in a ``bytearray`` sized from
``maxsize`` (16 counters per entry, rounded up to a power of two), capped at 15
(4-bit semantics) and all halved every ``25 * maxsize`` reads, so old
popularity fades. A doorkeeper (a Bloom filter of the same width, cleared at
each halving) absorbs every key's first read, so keys read once do not crowd
the counters. Memory: at most 64 bytes per entry of ``maxsize``, fixed at
construction. Every ``25 * maxsize`` reads a hill climber compares the hit
ratio with the previous period's and moves the window/main split in the
direction that last helped: a larger window for recency-heavy traffic, a
smaller one for frequency-heavy traffic.

Sources: Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache
Admission Policy" (ACM Transactions on Storage, 2017), and Caffeine's
``BoundedLocalCache`` (window sizing, hill climber, step decay).

Keys are hashed with CRC-32 of their UTF-8 bytes and fixed multipliers, never
``hash()``: the same trace gives the same decisions in every process.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Any

_WINDOW_SHARE = 0.01  # initial window: 1% of the entries, as in Caffeine
_PROTECTED_SHARE = 0.8  # of the main area
_COUNTER_MAX = 15
_COUNTERS_PER_ENTRY = 16  # sketch bytes per entry of maxsize (rounded up to a power of two)
_SAMPLE_PER_ENTRY = 25  # reads per entry of maxsize between agings (and hill-climber moves)
_DOORKEEPER = True
_STEP_SHARE = 0.01  # hill climber's full step, in entries per maxsize (Caffeine: 0.0625)
_STEP_DECAY = 0.98
_RESTART = 0.05  # a hit-ratio change this large restarts the climb with a full step
_READ_BUFFER = 512  # unlocked touches kept for replay; older ones are dropped (as in Caffeine)
_HALVE = bytes(i >> 1 for i in range(256))
_INC = bytes(min(i + 1, _COUNTER_MAX) for i in range(256))
_MULTIPLIERS = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0xD6E8FEB86659FD93)
_MASK64 = (1 << 64) - 1


class FrequencySketch:
    """Approximate recent read counts: ``next_pow2(16 * maxsize)`` counters and doorkeeper bits."""

    def __init__(self, maxsize: int) -> None:
        width = 8
        while width < _COUNTERS_PER_ENTRY * maxsize:
            width <<= 1
        self.table = bytearray(width)
        #: the doorkeeper: a Bloom filter (a byte per bit) that absorbs each key's first read
        self.door = bytearray(width) if _DOORKEEPER else None
        self._mask = width - 1

    def slots(self, key: str) -> tuple[int, int, int, int]:
        """The 4 counter positions of ``key`` (stable across processes)."""
        h = zlib.crc32(key.encode("utf-8", "surrogatepass")) + 1
        m = self._mask
        a, b, c, d = _MULTIPLIERS
        return (
            ((h * a) & _MASK64) >> 32 & m,
            ((h * b) & _MASK64) >> 29 & m,
            ((h * c) & _MASK64) >> 26 & m,
            ((h * d) & _MASK64) >> 23 & m,
        )

    def frequency(self, key: str) -> int:
        """Estimated recent reads of ``key``: the counters' minimum plus the doorkeeper bit (0..16)."""
        t = self.table
        a, b, c, d = self.slots(key)
        seen = self.door is None or (
            self.door[a] and self.door[b] and self.door[c] and self.door[d]
        )
        return min(t[a], t[b], t[c], t[d]) + (1 if seen else 0)

    def first_read(self, slots: tuple[int, int, int, int]) -> None:
        """Count a read of a key that is not resident: its first read only enters the doorkeeper."""
        door = self.door
        a, b, c, d = slots
        if door is None or (door[a] and door[b] and door[c] and door[d]):
            self.increment(slots)
        else:
            door[a] = door[b] = door[c] = door[d] = 1

    def increment(self, slots: tuple[int, int, int, int]) -> None:
        """Count one read of the key at ``slots`` (saturating at 15)."""
        t = self.table
        a, b, c, d = slots
        t[a] = _INC[t[a]]
        t[b] = _INC[t[b]]
        t[c] = _INC[t[c]]
        t[d] = _INC[t[d]]

    def halve(self) -> None:
        """Age every count (the "reset" of TinyLFU), in place."""
        self.table[:] = self.table.translate(_HALVE)
        if self.door is not None:
            self.door[:] = bytes(len(self.door))


class TinyLFU:
    """The key bookkeeping of W-TinyLFU for at most ``maxsize`` keys (no values)."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.sketch = FrequencySketch(maxsize)
        self.window: OrderedDict[str, None] = OrderedDict()
        self.probation: OrderedDict[str, None] = OrderedDict()
        self.protected: OrderedDict[str, None] = OrderedDict()
        #: key -> the segment holding it; iterating gives every resident key
        self.where: dict[str, OrderedDict[str, None]] = {}
        #: counter positions of the resident keys, so a hit does not hash again
        self._slots: dict[str, tuple[int, int, int, int]] = {}
        self.window_max = max(1, round(maxsize * _WINDOW_SHARE)) if maxsize > 1 else 1
        self._set_main()
        self._step = -_STEP_SHARE * maxsize
        self._table = self.sketch.table
        self._sample = _SAMPLE_PER_ENTRY * maxsize
        self._countdown = self._sample  # reads left until the sketch ages and the climber moves
        self._hits = 0
        self._previous = 0.0
        self._missed: tuple[str, tuple[int, int, int, int]] = ("", self.sketch.slots(""))

    def _set_main(self) -> None:
        self.protected_max = int((self.maxsize - self.window_max) * _PROTECTED_SHARE)

    def __len__(self) -> int:
        return len(self.where)

    def __contains__(self, key: object) -> bool:
        return key in self.where

    def __iter__(self) -> Iterator[str]:
        return iter(list(self.where))

    def record_miss(self, key: str) -> None:
        """A read of ``key`` that found nothing."""
        slots = self.sketch.slots(key)
        self._missed = (key, slots)  # a backfill usually adds this key next: hash it once
        self.sketch.first_read(slots)
        self._countdown -= 1
        if not self._countdown:
            self._period()

    def record_hit(self, key: str) -> None:
        """A read of resident ``key``: count it and refresh its place (probation → protected)."""
        slots = self._slots.get(key)
        if slots is None:  # removed since the read (a replayed unlocked touch): not a hit
            self.record_miss(key)
            return
        t = self._table
        a, b, c, d = slots
        t[a] = _INC[t[a]]  # the sketch's increment, inlined: this is the hot path
        t[b] = _INC[t[b]]
        t[c] = _INC[t[c]]
        t[d] = _INC[t[d]]
        where = self.where
        segment = where[key]
        if segment is self.probation:  # read again: promote, demoting protected's oldest if full
            del segment[key]
            protected = self.protected
            protected[key] = None
            where[key] = protected
            if len(protected) > self.protected_max:
                old, _ = protected.popitem(last=False)
                segment[old] = None
                where[old] = segment
        else:
            segment.move_to_end(key)
        self._hits += 1
        self._countdown -= 1
        if not self._countdown:
            self._period()

    def admits(self, key: str) -> bool:
        """Is ``key`` worth a place now that a tier below already holds it?

        Until the area is full, always; so too when ``key`` is resident (its older copy must
        be replaced, never left in place). Otherwise only if ``key`` was read more often
        recently than the key it would displace at the window's exit (main's least recently
        used): TinyLFU's admission test, made before the insert instead of after it, so a
        losing copy costs no insert, eviction and memo bookkeeping.
        """
        where = self.where
        if len(where) < self.maxsize or key in where:
            return True
        victim = next(iter(self.probation), None)
        if victim is None:
            return True
        missed = self._missed  # the read that missed just before: hashed already
        if missed[0] == key:
            t, door = self._table, self.sketch.door
            a, b, c, d = missed[1]
            seen = door is None or (door[a] and door[b] and door[c] and door[d])
            frequency = min(t[a], t[b], t[c], t[d]) + (1 if seen else 0)
        else:
            frequency = self.sketch.frequency(key)
        return frequency > self._frequency(victim)

    def add(self, key: str) -> list[str]:
        """Insert new ``key``; returns the keys to drop to stay within ``maxsize`` (maybe ``key``)."""
        self.window[key] = None
        self.where[key] = self.window
        missed = self._missed
        self._slots[key] = missed[1] if missed[0] == key else self.sketch.slots(key)
        return self._evict()

    def discard(self, key: str) -> None:
        """Forget ``key`` (deleted, expired or invalidated); its frequency stays in the sketch."""
        segment = self.where.pop(key, None)
        if segment is not None:
            del segment[key]
            del self._slots[key]

    def victim(self, spare: str | None = None) -> str | None:
        """The key to drop first when something else (a byte bound) needs room, never ``spare``."""
        for segment in (self.probation, self.window, self.protected):
            for key in segment:
                if key != spare:
                    return key
        return None

    # -- internals ---------------------------------------------------------------------------
    def _demote(self) -> None:
        while len(self.protected) > self.protected_max:
            key, _ = self.protected.popitem(last=False)
            self.probation[key] = None
            self.where[key] = self.probation

    def _evict(self) -> list[str]:
        candidates = []
        while len(self.window) > self.window_max:
            key, _ = self.window.popitem(last=False)
            self.probation[key] = None
            self.where[key] = self.probation
            candidates.append(key)
        dropped: list[str] = []
        frequency = self._frequency
        while len(self.where) > self.maxsize:
            victim = self.victim()
            if victim is None:
                break
            candidate = candidates.pop(0) if candidates else None
            if candidate is not None and candidate != victim:
                if frequency(candidate) > frequency(victim):
                    self.discard(victim)
                    dropped.append(victim)
                    continue
                victim = candidate
            self.discard(victim)
            dropped.append(victim)
        return dropped

    def _frequency(self, key: str) -> int:
        """``sketch.frequency`` of a resident key, from its kept counter positions."""
        slots = self._slots.get(key)
        if slots is None:
            return self.sketch.frequency(key)
        t, door = self._table, self.sketch.door
        a, b, c, d = slots
        seen = door is None or (door[a] and door[b] and door[c] and door[d])
        return min(t[a], t[b], t[c], t[d]) + (1 if seen else 0)

    def _period(self) -> None:
        """Every ``10 * maxsize`` reads: age the counts and let the hill climber move."""
        self.sketch.halve()
        self._climb(self._hits / self._sample)
        self._hits = 0
        self._countdown = self._sample

    def _climb(self, ratio: float) -> None:
        """Move the window/main split by the step that last raised the hit ratio (Caffeine's)."""
        change = ratio - self._previous
        amount = self._step if change >= 0 else -self._step
        if abs(change) >= _RESTART:
            self._step = _STEP_SHARE * self.maxsize * (1 if amount >= 0 else -1)
        else:
            self._step = _STEP_DECAY * amount
        self._previous = ratio
        target = round(self.window_max + amount)
        self.window_max = min(max(1, target), max(1, self.maxsize - 1))
        self._set_main()
        self._demote()


class TinyLFUStore:
    """``MemoryTier``'s entry map under W-TinyLFU, bounded by entries and optionally by size.

    Args:
        maxsize: the bound in its unit (entries, or bytes when ``getsizeof`` is given).
        getsizeof: the size of a value in the bound's unit, or None to count entries.
        max_entries: the bound on the number of entries (``maxsize`` when counting entries).
        evicted: called with ``(key, value)`` for every entry dropped to stay within bounds.
    """

    def __init__(
        self,
        maxsize: float,
        getsizeof: Callable[[Any], int] | None,
        max_entries: int,
        evicted: Callable[[str, Any], None],
    ) -> None:
        self.maxsize = maxsize
        self._getsizeof = getsizeof
        self._evicted = evicted
        self.data: dict[str, Any] = {}
        self._sizes: dict[str, int] = {}
        self.currsize = 0
        self.policy = TinyLFU(max_entries)
        #: the resident keys (``MemoryTier`` lists and pops them here too)
        self.order = self.policy.where
        self._reads: deque[str] = deque(maxlen=_READ_BUFFER)
        #: an unlocked read of a resident key (decorator fast path): queued, replayed under the lock
        self.touch = self._reads.append

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def peek(self, key: str) -> Any:
        """The value under ``key`` without counting a read, or None."""
        return self.data.get(key)

    def get(self, key: str, default: Any = None) -> Any:
        """The value under ``key`` (counted as a read, hit or miss), or ``default``."""
        if self._reads:
            self._replay()
        value = self.data.get(key)
        if value is None:
            self.policy.record_miss(key)
            return default
        self.policy.record_hit(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        size = self._getsizeof(value) if self._getsizeof is not None else 1
        if size > self.maxsize:
            raise ValueError("value too large")
        if self._reads:
            self._replay()
        if key in self.data:
            self.pop(key)
        self.data[key] = value
        self._sizes[key] = size
        self.currsize += size
        for dropped in self.policy.add(key):
            self._drop(dropped)
        while self.currsize > self.maxsize:  # the new entry fits alone: drop others for it
            victim = self.policy.victim(spare=key)
            if victim is None:
                break
            self.policy.discard(victim)
            self._drop(victim)

    def pop(self, key: str, default: Any = None) -> Any:
        """Remove ``key`` and return its value (or ``default``); not counted as an eviction."""
        value = self.data.pop(key, None)
        if value is None:
            return default
        self.currsize -= self._sizes.pop(key)
        self.policy.discard(key)
        return value

    def _drop(self, key: str) -> None:
        value = self.data.pop(key)
        self.currsize -= self._sizes.pop(key)
        self._evicted(key, value)

    def _replay(self) -> None:
        reads = self._reads
        record = self.policy.record_hit
        while reads:
            try:
                record(reads.popleft())
            except IndexError:  # another thread's touch raced the drain
                break

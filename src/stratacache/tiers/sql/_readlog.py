"""Reads recorded for the SQL tier's eviction order, so that a hit costs a dict lookup.

Reads are written out in batches (``BATCH`` keys, one UPDATE on the worker thread), a
process records a key at most once per ``EVERY`` seconds, and nothing is recorded while
the table is far from its bounds (``recording``, set by the tier's size checks).
"""

from __future__ import annotations

#: reads recorded for the eviction order before they are written out
BATCH = 256
#: seconds within which further reads of a key are not recorded again by this process
EVERY = 10.0
#: keys whose last recorded read this process remembers (forgotten all at once past it)
MEMORY = 16_384


class ReadLog:
    """The reads of one tier not yet written out."""

    __slots__ = ("_times", "pending", "recording")

    def __init__(self) -> None:
        self.pending: dict[str, None] = {}
        self._times: dict[str, float] = {}  # key -> when its read was last recorded
        #: False while eviction is not in sight: nothing is recorded then
        self.recording = True

    def record(self, key: str, now: float) -> bool:
        """Note a read of ``key`` at ``now``; True when a batch is ready to be written out."""
        if not self.recording:
            return False
        times = self._times
        last = times.get(key)
        if last is not None and 0 <= now - last < EVERY:
            return False
        if len(times) >= MEMORY:
            times.clear()
        times[key] = now
        self.pending[key] = None
        return len(self.pending) >= BATCH

    def take(self) -> list[str]:
        """The keys read since the last call (and forget them)."""
        pending, self.pending = self.pending, {}
        return list(pending)

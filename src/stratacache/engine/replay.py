"""Invalidations that survive outages: kept while Redis cannot take them, replayed in order.

When an invalidation cannot reach a shared tier or the bus (Redis down, hung,
full), the process has already outdated its own local tiers, but Redis may
still hold the old value and other processes were not told. The message is
kept in a bounded queue and a background task on the cache's loop replays the
queue in order (shared tiers, then the bus) every ``interval`` seconds
(jittered) until it is empty. Until then, reads in this process treat every
entry the pending messages could outdate (and that was created before them) as
a miss, in every tier: the old value Redis may still hold is never served, even
if Redis answers again before the replay.

The queue is bounded (``limit`` messages). On overflow it is dropped and the
namespace generation is flushed instead once Redis is back (or, without a
generation store, the shared tiers are cleared); until then every entry created
before the overflow is a miss.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ..core.entry import Entry
from ..core.fleet import GenerationStore, Invalidation, InvalidationBus
from .loading import matches
from .stack_slots import SlotView

log = logging.getLogger("stratacache")

#: default bound of the queue of invalidations waiting for Redis
REPLAY_LIMIT = 10_000
#: default seconds between replay attempts (jittered ±50%): short, since other processes
#: may read the old value from Redis between its return and the replay
REPLAY_INTERVAL = 0.1


class Replay:
    """The queue of invalidations that did not reach Redis, and its background replayer."""

    def __init__(
        self,
        tiers: SlotView,
        bus: InvalidationBus | None,
        spawn: Callable[[Awaitable[Any]], asyncio.Task[Any]],
        home_loop: Callable[[], asyncio.AbstractEventLoop | None],
        limit: int = REPLAY_LIMIT,
        interval: float | None = None,
    ) -> None:
        self.tiers = tiers
        self.bus = bus
        self.spawn = spawn
        self.home_loop = home_loop
        #: adopts a new namespace generation after an overflow (set by the cache)
        self.on_generation: Callable[[int], object] = lambda generation: None
        #: this process's identity on the bus (set by the cache)
        self.origin: Callable[[], str] = lambda: ""
        self.limit = limit
        self.interval = REPLAY_INTERVAL if interval is None else interval
        self.pending: deque[Invalidation] = deque()
        #: set when the queue overflowed: wall time of the overflow (0: none)
        self.overflowed_at = 0.0
        #: counters: messages kept, replayed, overflows, failed replay attempts
        self.kept = 0
        self.replayed = 0
        self.overflows = 0
        self.failures = 0
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def active(self) -> bool:
        """Is anything waiting to reach Redis?"""
        return bool(self.pending) or bool(self.overflowed_at)

    # -- keeping ---------------------------------------------------------------------------------
    def keep(self, message: Invalidation) -> None:
        """Queue ``message`` for replay (once; overflow turns into a namespace flush)."""
        with self._lock:
            if self.pending and self.pending[-1] is message:
                return  # the tiers and the bus both failed: one entry is enough
            if self.overflowed_at:
                return  # the coming flush covers it
            if len(self.pending) >= self.limit:
                self.pending.clear()
                self.overflowed_at = time.time()
                self.overflows += 1
                log.warning(
                    "stratacache: more than %d invalidations waiting for Redis; the namespace "
                    "will be flushed when it is back",
                    self.limit,
                )
            else:
                self.pending.append(message)
                self.kept += 1
        self._wake()

    def hides(self, fkey: str, entry: Entry, local: bool = False) -> bool:
        """Must a read treat ``entry`` of ``fkey`` (from a ``local`` tier or not) as a miss?"""
        if self.overflowed_at:
            return entry.created <= self.overflowed_at
        for message in list(self.pending):
            if message.reason == "overwrite" or (local and message.reason == "write-failed"):
                # this process wrote the newer value itself: its local copy is that value;
                # a shared tier that refused the write still holds the older one
                continue
            if entry.created <= message.at and matches(message, fkey, entry.tags):
                return True
        return False

    # -- replaying -------------------------------------------------------------------------------
    def _wake(self) -> None:
        loop = self.home_loop()
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._start()
        else:
            loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = self.spawn(self._run())

    async def _run(self) -> None:
        while self.active:
            await asyncio.sleep(self.interval * (0.5 + random.random()))
            try:
                await self._drain()
            except Exception as exc:  # still unreachable: try again after the next delay
                self.failures += 1
                log.debug("stratacache: invalidation replay failed: %r", exc)

    async def _drain(self) -> None:
        if self.overflowed_at:
            await self._flush()
            with self._lock:
                self.overflowed_at = 0.0
                self.pending.clear()
            return
        while self.pending:
            message = self.pending[0]
            await self._apply(message)
            with self._lock:
                if self.pending and self.pending[0] is message:
                    self.pending.popleft()
            self.replayed += 1
        log.info("stratacache: pending invalidations replayed")

    async def flush(self, timeout: float) -> bool:
        """One last replay attempt within ``timeout`` seconds (at ``close``); True if done."""
        if not self.active:
            return True
        try:
            await asyncio.wait_for(self._drain(), timeout)
        except Exception as exc:  # still unreachable (or too slow): say so, do not raise
            log.debug("stratacache: last invalidation replay failed: %r", exc)
        if self.active:
            log.warning(
                "stratacache: closing with %d invalidation(s) Redis never took: other "
                "processes may serve the old values until they expire",
                len(self.pending) or 1,
            )
        return not self.active

    async def _apply(self, message: Invalidation) -> None:
        """Apply ``message`` to every shared tier, then publish it; raise on any failure.

        An overwrite's message only tells other processes: the shared tiers already hold
        the new value, and deleting it there would throw away this process's own write.
        """
        overwrite = message.reason == "overwrite"
        tiers: list[Any] = [
            s.tier for s in reversed(self.tiers.slots) if not s.local and not overwrite
        ]
        for tier in tiers:
            if message.clear:
                await tier.clear()
                continue
            if message.keys:
                await tier.delete_many(list(message.keys))
            if message.tags:
                await tier.invalidate_tags(list(message.tags))
            for prefix in message.prefixes:
                await tier.delete_prefix(prefix)
        bus = self.bus
        if bus is not None:
            await bus.publish(message)

    async def _flush(self) -> None:
        """After an overflow: move the namespace to a new generation (or clear shared tiers)."""
        store = self.bus if isinstance(self.bus, GenerationStore) else None
        if store is None:
            for slot in self.tiers.slots:
                if not slot.local:
                    await slot.tier.clear()
            return
        generation = await store.bump_generation()
        self.on_generation(generation)
        await store.publish(
            Invalidation(
                clear=True,
                reason="replay-overflow",
                origin=self.origin(),
                at=time.time(),
                generation=generation,
            )
        )

    def as_dict(self) -> dict[str, int]:
        """Counters for ``stats()``."""
        return {
            "invalidations_pending": len(self.pending),
            "invalidations_kept": self.kept,
            "invalidations_replayed": self.replayed,
            "invalidation_overflows": self.overflows,
        }

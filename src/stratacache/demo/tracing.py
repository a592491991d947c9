"""Which path answered each demo request: a thin tracing wrapper around the tiers.

Each request runs with a ``_Trace`` in a context variable. ``TracedTier``
notes which tier answered the request's own read; the source marks the
request that ran the loader (tasks the engine spawns for a load inherit the
context, so the mark lands on the request that started it); a request that
waited on a read or load another request had started is *joined*. The
numbers are therefore those of the real engine, with nothing simulated.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping, Sequence
from typing import Any

from ..core.entry import Entry
from ..core.tier import Tier, TierContext
from .workload import PathStats

LOADER = "loader"
JOINED = "joined"


class _Trace:
    """What happened to one request: the path that answered, the tiers that missed."""

    __slots__ = ("answered", "missed", "suspended")

    def __init__(self) -> None:
        self.answered: str | None = None
        self.missed: set[str] = set()
        self.suspended = False


#: the trace of the request running in the current task
_current: contextvars.ContextVar[_Trace | None] = contextvars.ContextVar(
    "stratacache_demo_request", default=None
)


def mark_loader() -> None:
    """Note that the current request ran the loader (the source calls this)."""
    trace = _current.get()
    if trace is not None and trace.answered is None:
        trace.answered = LOADER


class _Resume:
    """Await the rest of a coroutine that was stepped by hand and suspended on ``pending``."""

    __slots__ = ("coro", "pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            yield self.pending  # the running task waits on it, as if the coroutine had yielded it
        except BaseException:
            self.coro.close()
            raise
        return (yield from self.coro.__await__())


class TracedTier:
    """Delegates to a tier and notes, for the current request, that this tier answered."""

    def __init__(self, tier: Tier) -> None:
        self._tier = tier
        self.name = tier.name
        self.ttl = tier.ttl
        self.shared = tier.shared

    @property
    def inner(self) -> Tier:
        """The wrapped tier."""
        return self._tier

    def __getattr__(self, name: str) -> Any:  # peek/touch/evictions/... of the wrapped tier
        return getattr(self._tier, name)

    async def start(self, context: TierContext) -> None:
        await self._tier.start(context)

    async def close(self) -> None:
        await self._tier.close()

    async def get(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        return self._note(await self._tier.get(key, tags))

    def _note(self, entry: Entry | None) -> Entry | None:
        trace = _current.get()
        if trace is not None and trace.answered is None:
            if entry is None:
                trace.missed.add(self.name)
            else:
                # a hit in a tier that already missed for this request is the re-read after
                # waiting on another request's load (single-flight)
                trace.answered = JOINED if self.name in trace.missed else self.name
        return entry

    async def get_many(self, keys: Sequence[str]) -> dict[str, Entry]:
        return await self._tier.get_many(keys)

    async def lease(self, key: str, tags: Sequence[str]) -> object | None:
        return await self._tier.lease(key, tags)

    async def set(self, key: str, entry: Entry, lease: object | None = None) -> bool:
        return await self._tier.set(key, entry, lease)

    async def set_many(self, entries: Mapping[str, Entry]) -> None:
        await self._tier.set_many(entries)

    async def delete_many(self, keys: Sequence[str]) -> int:
        return await self._tier.delete_many(keys)

    async def delete_prefix(self, prefix: str) -> int:
        return await self._tier.delete_prefix(prefix)

    async def invalidate_tags(self, tags: Sequence[str]) -> None:
        await self._tier.invalidate_tags(tags)

    async def clear(self) -> None:
        await self._tier.clear()


class _Sized(TracedTier):
    """Reports the wrapped tier's size (the engine shows it as ``entries``)."""

    def __len__(self) -> int:
        return len(self._tier)  # type: ignore[arg-type]


class _SyncGet(TracedTier):
    """Traces the blocking ``get_sync`` too (the engine calls it on in-process tiers)."""

    def get_sync(self, key: str, tags: Sequence[str] | None = None) -> Entry | None:
        return self._note(self._tier.get_sync(key, tags))  # type: ignore[attr-defined]


class _SizedSyncGet(_Sized, _SyncGet):
    """Both."""


def trace(tier: Tier) -> TracedTier:
    """Wrap ``tier`` for request tracing, keeping ``len()`` and ``get_sync`` where it has them."""
    sized = hasattr(tier, "__len__")
    sync = callable(getattr(tier, "get_sync", None))
    kind = {(False, False): TracedTier, (True, False): _Sized, (False, True): _SyncGet}
    return kind.get((sized, sync), _SizedSyncGet)(tier)


def classify(trace: _Trace, l1_name: str) -> str:
    """The path that answered a request, from its trace."""
    if trace.answered is not None:
        return trace.answered
    # no tier answered this request's own reads and it ran no loader: either it never waited
    # (the decorator's fast path: an L1 hit), or it waited on a read or a load another request
    # had already started for the same key (the engine coalesces both)
    return JOINED if trace.suspended or trace.missed else l1_name


def traced(
    call: Callable[[int], Coroutine[Any, Any, Any]], paths: dict[str, PathStats], l1_name: str
) -> Callable[[int], Awaitable[str]]:
    """A request function that times ``call`` and files the latency under the path that answered."""
    clock = time.perf_counter_ns

    async def request(product_id: int) -> str:
        trace = _Trace()
        token = _current.set(trace)
        started = clock()
        coro = call(product_id)
        try:  # step the call by hand to learn whether it ever waited
            pending = coro.send(None)
        except StopIteration:
            pass
        else:
            trace.suspended = True
            await _Resume(coro, pending)
        took = clock() - started
        _current.reset(token)
        path = classify(trace, l1_name)
        paths[path].latencies.append(took)
        return path

    return request


__all__ = ["JOINED", "LOADER", "TracedTier", "classify", "mark_loader", "trace", "traced"]

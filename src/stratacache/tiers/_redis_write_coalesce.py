"""Coalesced leased writes: backfills and loads of one event loop go out as one pipeline.

Why: a burst of misses (many tasks loading, or filling Redis from a lower tier) ends
in one leased SET per key, each a set-script call with its own connection, send and
reply parse; one pipeline of every such write issued in the same loop turn pays that
once (as ``_redis_coalesce`` does for reads).

How: a leased write that finds no batch open opens one and lets the loop turn run
(``sleep(0)``: a write waits one loop turn, a few microseconds when the loop is idle,
where reads go out alone at once: a caller waits on a read, a write has its value
already); every leased write issued meanwhile joins, then the opener (the *leader*)
sends one non-transactional pipeline of their set-script calls (a lone call as it is),
in the order they were issued, and hands each writer its own reply. Each call still
checks its own lease inside Redis when it runs, so a write held back for a loop turn
never lands over an invalidation or a newer write: those void the lease first, and
the script refuses (see ``_redis_scripts``).

Failure and cancellation: an error of the whole batch reaches every writer (each sees
its own write fail: the engine counts one failure per caller, nothing is raised to
them); a reply that is an error fails only its own writer. A writer cancelled before
the batch is sent is left out of it; a cancelled leader hands the batch to a task that
sends it for the others (again, if it was cut off mid-send: a leased write is idempotent).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import NoScriptError

from ..core.entry import Entry
from ..core.errors import TierError
from ..core.loops import PerLoop
from . import _redis_batch as rb
from . import _redis_scripts as rs
from . import _redis_writes as rw
from ._redis_client import ASYNC_DRIVER_ERRORS, SCRIPTS, SHA, Call, Side, timeout

if TYPE_CHECKING:
    from .redis import RedisTier

#: sends one batch: the calls in order, to their replies (an error reply as an exception)
Send = Callable[[Sequence[Call], int], Awaitable[Sequence[Any]]]
Pending = list[tuple[Call, "asyncio.Future[Any]"]]


class WriteCoalescer:
    """The leased-write batches of one event loop (futures are bound to a loop)."""

    __slots__ = ("_bytes", "_open", "batches", "coalesced")

    def __init__(self) -> None:
        self._open: Pending | None = None
        self._bytes = 0
        #: batches sent, and writes that rode in a batch opened by another write
        self.batches = 0
        self.coalesced = 0

    def drop(self) -> None:
        """Its loop ended: its batches end with it, nothing to release."""

    async def write(self, call: Call, nbytes: int, send: Send) -> Any:
        """The reply to ``call``, sent with the other leased writes of this loop turn."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        batch = self._open
        if batch is not None:
            batch.append((call, future))
            self._bytes += nbytes
            self.coalesced += 1
            return await future
        batch = self._open = [(call, future)]
        self._bytes = nbytes
        try:
            await asyncio.sleep(0)  # let the writes of this loop turn join
        except asyncio.CancelledError:
            future.cancel()  # the leader's own write is left out; the others still go
            _hand_on(batch, self._close(batch), send)
            raise
        nbytes = self._close(batch)
        self.batches += 1
        try:
            await _send(batch, nbytes, send)
        except asyncio.CancelledError:
            future.cancel()
            _hand_on(batch, nbytes, send)  # sent again: each call is idempotent under its lease
            raise
        except BaseException as exc:
            future.cancel()  # the leader raises ``exc`` itself
            _fail(batch, exc)
            raise
        return future.result()

    def _close(self, batch: Pending) -> int:
        """Stop ``batch`` taking writes; the bytes it holds."""
        if self._open is batch:
            self._open = None
        return self._bytes


#: tasks completing a batch whose leader was cancelled (kept referenced until done)
_BACKGROUND: set[asyncio.Task[None]] = set()


async def _send(batch: Pending, nbytes: int, send: Send) -> None:
    """Send the calls of the writers still waiting and hand each its reply."""
    waiting = [(call, f) for call, f in batch if not f.done()]
    if not waiting:
        return
    replies = await send([call for call, _ in waiting], nbytes)
    for (_, future), reply in zip(waiting, replies, strict=True):
        if not future.done():
            future.set_result(reply)


def _hand_on(batch: Pending, nbytes: int, send: Send) -> None:
    """Send a batch for its other writers from a task of its own (its leader was cancelled)."""
    if any(not f.done() for _, f in batch):
        task = asyncio.get_running_loop().create_task(_complete(batch, nbytes, send))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)


async def _complete(batch: Pending, nbytes: int, send: Send) -> None:
    try:
        await _send(batch, nbytes, send)
    except BaseException as exc:
        _fail(batch, exc)
        if not isinstance(exc, Exception):
            raise


def _fail(batch: Pending, exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            if isinstance(exc, asyncio.CancelledError):
                future.cancel()
            else:
                future.set_exception(exc)


# -- the tier's side ------------------------------------------------------------------------------
async def leased_set(tier: RedisTier, key: str, entry: Entry, lease: rs.RedisLease) -> bool:
    """``set`` under ``lease`` on one Redis, its set-script call coalesced with the loop
    turn's other leased writes (False: the lease was voided, nothing stored)."""
    px = rw.physical_ttl_ms(tier, entry)
    if px is None:
        return True  # already past its end: nothing worth storing
    data = tier.context.codec.encode(entry, key=key)
    plan = rw.set_args(tier, key, entry, lease, data, px)
    try:  # on one Redis the arguments take no round trip: the generator ends at once
        next(plan)
    except StopIteration as done:
        args = done.value
    else:  # pragma: no cover - only a cluster reads tag versions first (never coalesced)
        raise AssertionError("leased_set is for one Redis")
    call: Call = ("EVALSHA", SHA["set"], *args)
    try:
        reply = await coalescer(tier).write(
            call, len(data), lambda calls, nbytes: send_writes(tier, calls, nbytes)
        )
    except ASYNC_DRIVER_ERRORS as exc:
        raise TierError(tier.name, "set", exc) from exc
    if isinstance(reply, Exception):  # this write's own error reply
        raise TierError(tier.name, "set", reply) from reply
    return bool(reply)


def coalescer(tier: RedisTier) -> WriteCoalescer:
    """The leased-write batches of ``tier`` on this event loop."""
    coalescers = tier.write_coalescers
    if coalescers is None:
        coalescers = tier.write_coalescers = PerLoop(WriteCoalescer, WriteCoalescer.drop)
    return coalescers.get()


async def send_writes(tier: RedisTier, calls: Sequence[Call], nbytes: int) -> list[Any]:
    """The replies to ``calls`` (error replies in place), one pipeline for several; the
    scripts are reloaded once if Redis lost them. The budget grows with the bytes written,
    as a batch chunk's does."""
    side: Side = tier.sides.get()  # type: ignore[union-attr]
    budget = tier.op_timeout + nbytes / rb.BUDGET_BYTES_PER_S
    try:
        replies = await _execute(side, calls, budget)
    except NoScriptError:  # a call sent alone raises its error reply
        await _load_scripts(side, budget)
        return await _execute(side, calls, budget)
    lost = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
    if lost:  # such a call ran nothing: sent again once the scripts are back
        await _load_scripts(side, budget)
        again = await _execute(side, [calls[i] for i in lost], budget)
        for i, reply in zip(lost, again, strict=True):
            replies[i] = reply
    return replies


async def _execute(side: Side, calls: Sequence[Call], budget: float) -> list[Any]:
    async with timeout(budget):
        if len(calls) == 1:  # alone: no pipeline to build
            return [await side.c.execute_command(*calls[0])]
        pipe = side.c.pipeline(transaction=False)
        for call in calls:
            pipe.execute_command(*call)
        return list(await pipe.execute(raise_on_error=False))


async def _load_scripts(side: Side, budget: float) -> None:
    async with timeout(budget):
        for src in SCRIPTS.values():
            await side.c.script_load(src)

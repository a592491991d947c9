"""Coalesced single-key reads: concurrent ``get``s of one event loop go out as one MGET.

Why: with many tasks reading at once, the Python cost of a command (packing, a send,
a reply parse) dominates a Redis read; one MGET for every read issued in the same loop
turn pays it once (as ioredis' auto-pipelining does).

How: a read that finds no read in flight goes out at once, alone (no added latency at
concurrency 1). Otherwise it opens a batch and lets the current loop turn run
(``sleep(0)``): every read issued meanwhile joins the batch, then the opener (the
*leader*) sends one MGET of the distinct keys and hands each waiter its own reply. A
read only joins a batch that has not been sent yet, so its reply always reflects the
server after the read was issued (no stale reply from an earlier request).

Lease reads (several bookkeeping keys read in one MGET) join batches the same way
(``read_keys``): the batch is still one MGET, so what one read sees is one snapshot.

Failure and cancellation: an error of the batch reaches every waiter (each sees it as
its own read failing); a cancelled waiter only drops its own future; a leader cancelled
while its batch is open (its loop turn) or being sent hands the batch to a task that
sends it for the remaining waiters, so a read that joined never waits on a caller
that is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

#: sends one batch: the distinct keys, in order, to their raw replies (same order)
Send = Callable[[Sequence[str]], Awaitable[Sequence[Any]]]


class ReadCoalescer:
    """The read batches of one event loop (futures are bound to a loop)."""

    __slots__ = ("_inflight", "_open", "batches", "coalesced")

    def __init__(self) -> None:
        self._inflight = 0
        self._open: dict[str, list[asyncio.Future[Any]]] | None = None
        #: batches sent, and reads that rode in a batch opened by another read
        self.batches = 0
        self.coalesced = 0

    def drop(self) -> None:
        """Its loop ended: its batches end with it, nothing to release."""

    async def read(self, key: str, send: Send, alone: Callable[[str], Awaitable[Any]]) -> Any:
        """The raw reply for ``key``: alone when nothing is in flight, else in a batch."""
        batch = self._open
        if batch is not None:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            waiters = batch.get(key)
            if waiters is None:
                batch[key] = [future]
            else:
                waiters.append(future)
            self.coalesced += 1
            return await future
        self._inflight += 1
        try:
            if self._inflight == 1:
                return await alone(key)
            return (await self._open_and_lead([key], send))[key]
        finally:
            self._inflight -= 1

    async def read_keys(self, keys: Sequence[str], send: Send) -> list[Any]:
        """The raw replies for several keys (one MGET's worth), batched as ``read`` does."""
        batch = self._open
        if batch is not None:
            loop = asyncio.get_running_loop()
            futures = []
            for key in keys:
                future: asyncio.Future[Any] = loop.create_future()
                batch.setdefault(key, []).append(future)
                futures.append(future)
            self.coalesced += 1
            try:
                return [await f for f in futures]
            except asyncio.CancelledError:
                for f in futures:
                    f.cancel()
                raise
        self._inflight += 1
        try:
            if self._inflight == 1:
                return list(await send(keys))
            replies = await self._open_and_lead(keys, send)
            return [replies[k] for k in keys]
        finally:
            self._inflight -= 1

    async def _open_and_lead(self, keys: Sequence[str], send: Send) -> dict[str, Any]:
        """Open a batch with ``keys``, let the loop turn's reads join, send it."""
        batch: dict[str, list[asyncio.Future[Any]]] = {k: [] for k in keys}
        self._open = batch
        try:
            await asyncio.sleep(0)  # let the reads of this loop turn join
        except asyncio.CancelledError:
            self._close(batch)
            _hand_on(batch, send)  # the reads that joined are still answered
            raise
        self._close(batch)
        return await self._lead(batch, send)

    def _close(self, batch: dict[str, list[asyncio.Future[Any]]]) -> None:
        """Stop ``batch`` taking reads."""
        if self._open is batch:
            self._open = None

    async def _lead(
        self, batch: dict[str, list[asyncio.Future[Any]]], send: Send
    ) -> dict[str, Any]:
        keys = list(batch)
        self.batches += 1
        try:
            replies = await send(keys)
        except asyncio.CancelledError:
            _hand_on(batch, send)
            raise
        except BaseException as exc:
            _fail(batch, exc)
            raise
        _deliver(keys, batch, replies)
        return dict(zip(keys, replies, strict=True))


#: tasks completing a batch whose leader was cancelled (kept referenced until done)
_BACKGROUND: set[asyncio.Task[None]] = set()


def _hand_on(batch: dict[str, list[asyncio.Future[Any]]], send: Send) -> None:
    """Send a batch for its waiters from a task of its own (its leader was cancelled)."""
    if any(not f.done() for waiters in batch.values() for f in waiters):
        task = asyncio.get_running_loop().create_task(_complete(batch, send))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)


async def _complete(batch: dict[str, list[asyncio.Future[Any]]], send: Send) -> None:
    """Finish a batch for its waiters after its leader was cancelled (only the keys
    someone still waits for: the leader's own may have no waiter left)."""
    keys = [k for k, waiters in batch.items() if any(not f.done() for f in waiters)]
    if not keys:
        return
    try:
        replies = await send(keys)
    except BaseException as exc:
        _fail(batch, exc)
        if not isinstance(exc, Exception):
            raise
        return
    _deliver(keys, batch, replies)


def _deliver(
    keys: list[str], batch: dict[str, list[asyncio.Future[Any]]], replies: Sequence[Any]
) -> None:
    for key, reply in zip(keys, replies, strict=True):
        for future in batch[key]:
            if not future.done():  # a cancelled waiter
                future.set_result(reply)


def _fail(batch: dict[str, list[asyncio.Future[Any]]], exc: BaseException) -> None:
    for waiters in batch.values():
        for future in waiters:
            if not future.done():
                if isinstance(exc, asyncio.CancelledError):
                    future.cancel()
                else:
                    future.set_exception(exc)

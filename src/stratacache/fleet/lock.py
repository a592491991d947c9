"""The fleet recompute lock: on a miss, one process across the fleet runs the loader.

``RedisLock`` takes ``SET lock-key token NX PX lease`` and, if another process
holds it, learns the holder's token and remaining lease in the same round trip
(one Lua call). The holder releases with a compare-and-delete script that also
``PUBLISH``es the token on the key's own channel, so waiters are woken the
moment the value has landed instead of polling. Each process keeps one pattern
subscription (``PSUBSCRIBE prefix:done:*``) and a table of waiting futures.

A waiter never waits blindly: it re-checks the lock when the holder's lease
runs out (a holder that died stops renewing, its key expires and the first
waiter to retry takes over), polls with backoff while the subscription is down,
and gives up after ``wait_timeout`` (the caller then loads the value itself).
Synchronous callers get the same lock through blocking twins (``acquire_sync``,
``wait_sync``, ...) on a ``redis.Redis`` client and a pub/sub thread of their own
(see ``fleet.blocking_lock``): the same scripts, keys and channels, so sync and async
callers in different processes coordinate with each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from ..core.durations import check_duration
from ..core.fleet import LockAttempt
from ..core.loops import abandon, on_fork
from .connection import RedisConnection
from .lock_protocol import (
    POLL_MAX,
    POLL_MIN,
    RECENT,
    SCRIPTS,
    UNANSWERED,
    attempt,
    orphan_delays,
    text,
)
from .topology import Topology

if TYPE_CHECKING:
    from .blocking_lock import BlockingLock

log = logging.getLogger("stratacache")


class RedisLock:
    """A ``FleetLock`` on Redis: ``SET NX PX`` with a random token, pub/sub wake-ups.

    Args:
        url: Redis URL (ignored when ``client`` or ``connection`` is given).
        client: an existing ``redis.asyncio.Redis`` or ``RedisCluster`` client.
        connection: a ``RedisConnection`` (one Redis, Cluster or Sentinel) instead of ``url``;
            ``RedisTier.fleet_lock()`` passes the tier's own.
        sync_client: an existing ``redis.Redis`` client for sync callers (default: one
            built from ``url``, or from ``client``'s connection options).
        lease: seconds a holder keeps the lock without renewing; a dead holder blocks
            others for at most this long.
        renew: extend the lease every ``lease / 3`` while the loader runs, so a slow
            loader keeps the lock and a dead one loses it.
        wait_timeout: seconds a waiter waits in total before loading the value itself.
        prefix: prefix of the lock keys and channels.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: Any = None,
        sync_client: Any = None,
        lease: float = 10.0,
        renew: bool = True,
        wait_timeout: float = 30.0,
        prefix: str = "sc",
        connection: RedisConnection | None = None,
    ) -> None:
        self.connection = connection or RedisConnection(url)
        self.url = self.connection.url
        #: where commands go and the release listener subscribes
        self.topology = Topology(self.connection, client)
        self.lease = check_duration("RedisLock lease", lease)
        self.renew = renew
        self.wait_timeout = check_duration("RedisLock wait_timeout", wait_timeout)
        self.prefix = prefix
        self._given = client
        self._client: Any = client
        self._scripts: dict[str, Any] = {}
        self._waiters: dict[str, list[asyncio.Future[str]]] = {}
        self._released: OrderedDict[str, str] = OrderedDict()
        self._listener: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._start_lock: asyncio.Lock | None = None
        self._given_sync = sync_client
        self._blocking: BlockingLock | None = None
        self._blocking_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._orphans: set[asyncio.Task[None]] = set()  # releases of lost acquires
        on_fork(self)

    # -- names -----------------------------------------------------------------------------
    def lock_key(self, key: str) -> str:
        """The Redis key of the lock on cache key ``key``."""
        return f"{self.prefix}:lock:{key}"

    def channel(self, key: str) -> str:
        """The channel on which a release of ``key``'s lock is announced."""
        return f"{self.prefix}:done:{key}"

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect and subscribe (done on first use); waits until the subscription is live.

        Its asyncio client and listener belong to one event loop: first used from another
        loop, the lock lets go of them (without that loop) and starts afresh there.
        """
        loop = asyncio.get_running_loop()
        if self._listener is not None and self._loop is loop:
            return
        if self._loop is not loop:
            self._forget()  # nothing of the old loop can be used here
            self._loop = loop
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._listener is not None:
                return
            if self._client is None:
                self._client = self.topology.commands(max_connections=64)
            answered = True
            for name, src in SCRIPTS:
                self._scripts[name] = self._client.register_script(src)
                if not answered:
                    continue  # loaded on first use
                try:
                    await self._client.script_load(src)  # no NOSCRIPT round trips on a miss
                except UNANSWERED:
                    answered = False  # each would wait as long: Redis is down or hung
                except RedisError:
                    pass  # e.g. SCRIPT not allowed: loaded on first use
            self._ready = asyncio.Event()
            self._listener = asyncio.ensure_future(self._listen())
            # Bounded: without the subscription the lock still works, by polling.
            if answered:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), timeout=2.0)

    async def close(self) -> None:
        if self._loop is not asyncio.get_running_loop():
            self._forget()  # another loop's tasks and client cannot be awaited from this one
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        for futures in self._waiters.values():
            for fut in futures:
                fut.cancel()
        self._waiters.clear()
        for task in list(self._orphans):  # their locks expire with their lease
            task.cancel()
        with contextlib.suppress(Exception):
            await self.topology.close()
        if self._client is not None and self._given is None:
            await self._client.aclose()
            self._client = None
        self._start_lock = None
        if self._blocking is not None and self._blocking.started:
            await asyncio.to_thread(self._blocking.close)

    def after_fork(self) -> None:
        """In a forked child: never use the parent's sockets (a given client's included)."""
        self._forget()
        if self._given is not None:
            abandon(self._given)

    def _forget(self) -> None:
        """Let go of the client, listener and waiters of another loop (or a parent process)."""
        self._listener = self._ready = self._start_lock = self._loop = None
        self._waiters.clear()
        self.topology.forget()
        if self._given is None and self._client is not None:
            abandon(self._client)
            self._client = None

    async def _listen(self) -> None:
        """Dispatch release announcements to waiters; resubscribe after connection loss."""
        pattern = self.channel("*")
        delay = POLL_MIN
        while True:
            client: Any = None
            pubsub: Any = None
            try:
                # classic PUBLISH reaches every node of a Cluster: any primary will do
                node = await self.topology.any_node(self._client)
                client = self.topology.subscriber(node)
                pubsub = client.pubsub()
                await pubsub.psubscribe(pattern)
                while True:
                    msg = await pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    if msg["type"] == "psubscribe" and self._ready is not None:
                        self._ready.set()
                        delay = POLL_MIN
                    elif msg["type"] == "pmessage":
                        self._on_release(msg["channel"], msg["data"])
            except (RedisError, OSError) as exc:
                log.warning("stratacache: lock subscription lost, waiters poll: %r", exc)
                if self._ready is not None:
                    self._ready.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            finally:
                with contextlib.suppress(Exception):
                    if pubsub is not None:
                        await pubsub.aclose()
                    if client is not None:
                        await client.aclose()
                        await client.connection_pool.disconnect()

    def _on_release(self, channel: bytes, data: bytes) -> None:
        key = text(channel)[len(self.channel("")) :]
        token = text(data)
        self._released[key] = token
        self._released.move_to_end(key)
        while len(self._released) > RECENT:
            self._released.popitem(last=False)
        for fut in self._waiters.pop(key, ()):
            if not fut.done():
                fut.set_result(token)

    @property
    def subscribed(self) -> bool:
        """True while waiters can count on being woken by a message."""
        return self._ready is not None and self._ready.is_set()

    # -- the lock --------------------------------------------------------------------------
    async def acquire(self, key: str) -> LockAttempt:
        await self.start()
        token = secrets.token_hex(16)
        try:
            reply = await self._scripts["acquire"](
                keys=[self.lock_key(key)], args=[token, int(self.lease * 1000)]
            )
        except UNANSWERED:  # it may still run when Redis answers: release it then
            task = asyncio.ensure_future(self._release_orphan(key, token))
            self._orphans.add(task)
            task.add_done_callback(self._orphans.discard)
            raise
        return attempt(reply)

    async def _release_orphan(self, key: str, token: str) -> None:
        """Release the token of an acquire that got no answer (``orphan_delays``)."""
        for delay in orphan_delays(self.lease):
            await asyncio.sleep(delay)
            try:
                await self.release(key, token)
            except (RedisError, OSError):  # still unreachable: try again
                continue
            except Exception:  # closed meanwhile: its lock expires with the lease
                return
            return

    async def release(self, key: str, token: str) -> bool:
        released = await self._scripts["release"](
            keys=[self.lock_key(key)], args=[token, self.channel(key)]
        )
        return bool(released)

    async def renew_once(self, key: str, token: str) -> bool:
        """Extend our lease on ``key`` by ``lease``; False if the lock is no longer ours."""
        renewed = await self._scripts["renew"](
            keys=[self.lock_key(key)], args=[token, int(self.lease * 1000)]
        )
        return bool(renewed)

    @contextlib.asynccontextmanager
    async def hold(self, key: str, token: str) -> AsyncIterator[None]:
        if not self.renew:
            yield
            return

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.lease / 3)
                try:
                    if not await self.renew_once(key, token):
                        return
                except (RedisError, OSError) as exc:
                    log.warning("stratacache: lock renewal of %r failed: %r", key, exc)

        task = asyncio.ensure_future(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait(self, key: str, holder: LockAttempt, timeout: float) -> bool:
        if self._released.get(key) == holder.token:
            return True  # released between the acquire reply and now
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        self._waiters.setdefault(key, []).append(fut)
        # Wake at the holder's lease end at the latest, to take over from a dead holder.
        deadline = loop.time() + min(timeout, holder.ttl + 0.005 if holder.ttl > 0 else POLL_MIN)
        delay = POLL_MIN
        try:
            while (remaining := deadline - loop.time()) > 0:
                polling = not self.subscribed
                done, _ = await asyncio.wait(
                    {fut}, timeout=min(delay, remaining) if polling else remaining
                )
                if done:
                    return True
                if polling:  # no message will come: look at the lock itself, backing off
                    delay = min(delay * 2, POLL_MAX)
                    if await self._gone(key, holder.token):
                        return True
            return False
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[key]

    async def _gone(self, key: str, token: str) -> bool:
        """Is ``token`` no longer the holder of ``key`` (released or expired)?"""
        try:
            current = await self._client.get(self.lock_key(key))
        except (RedisError, OSError):
            return False
        return current is None or text(current) != token

    # -- the blocking side (SyncFleetLock): thin doors onto ``sync_lock.BlockingLock`` -------
    @property
    def blocking(self) -> BlockingLock:
        """The blocking side: a ``redis.Redis`` client and pub/sub thread of its own."""
        if self._blocking is None:
            from .blocking_lock import BlockingLock

            with self._blocking_lock:
                if self._blocking is None:
                    self._blocking = BlockingLock(self, self._given, self._given_sync)
        return self._blocking

    def start_sync(self) -> None:
        """Connect the blocking client and start its pub/sub thread (done on first use)."""
        self.blocking.start()

    def close_sync(self) -> None:
        """Stop the pub/sub thread and close the blocking client (a later use restarts them)."""
        if self._blocking is not None:
            self._blocking.close()

    @property
    def subscribed_sync(self) -> bool:
        """True while sync waiters can count on being woken by a message."""
        return self._blocking is not None and self._blocking.subscribed

    def acquire_sync(self, key: str) -> LockAttempt:
        return self.blocking.acquire(key)

    def release_sync(self, key: str, token: str) -> bool:
        return self.blocking.release(key, token)

    def renew_once_sync(self, key: str, token: str) -> bool:
        """``renew_once``, blocking."""
        return self.blocking.renew_once(key, token)

    def hold_sync(self, key: str, token: str) -> contextlib.AbstractContextManager[None]:
        return self.blocking.hold(key, token)

    def wait_sync(self, key: str, holder: LockAttempt, timeout: float) -> bool:
        return self.blocking.wait(key, holder, timeout)


__all__ = ["RedisLock"]

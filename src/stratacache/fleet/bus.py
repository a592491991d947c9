"""``RedisBus``: the invalidation bus on Redis pub/sub (one channel per namespace).

Each process publishes its invalidations (and overwrites) as msgpack on
``{channel_prefix}:{namespace}`` with its origin id, and a reader task
(``fleet.subscription``) applies everyone else's to the local tiers. Losing the subscription is what makes a
multi-level cache lie, so it is watched closely:

- the subscriber connection never reconnects silently (redis-py's own retry is
  off for it): an EOF or reset surfaces as an error in the reader at once;
- a half-open connection is caught by our own PING whenever the channel has
  been quiet for ``health_interval`` seconds (no PONG in time → down);
- on loss the bus reports ``on_state(False)`` (the engine serves its local
  tiers only within its staleness bound), then reconnects with exponential backoff and reports
  ``on_state(True)`` only once subscribed again.

The reader runs on a thread of its own (its own event loop, a ``Portal``), so the
subscription lives as long as the bus, whatever happens to the event loops that
use the cache: a loop that closes (``asyncio.run`` ends) takes nothing with it.
Callbacks (``on_message``, ``on_state``) therefore run on the bus thread. If that
thread's loop stops without ``close()``, the bus reports ``on_state(False)`` and
starts a new reader thread. Publishing (``fleet.sender``) uses one client per
calling event loop (``publish``) or a blocking client (``publish_sync``), and
fails at once while the subscription is down or just after a failed publish
(the engine keeps the message and replays it). In a
child after ``fork`` every connection and the thread are forgotten (never
shared with the parent); the engine restarts the bus on its next use.

The bus also keeps the namespace generation (``GenerationStore``) in Redis
under ``{channel_prefix}:{namespace}:generation``; after every (re)subscribe it
is re-read, so a flush missed while disconnected is still applied.

On a Redis Cluster the channel is a shard channel (``SSUBSCRIBE`` on the
primary owning its slot, ``SPUBLISH`` routed there); behind Sentinel the
subscriber follows the primary the sentinels name (``fleet.topology``).

With ``tracking=True`` a ``TrackingGroup`` (``fleet.tracking_group``) also has
every primary report every change of a key under ``{namespace}:`` (even by
other programs); the bus reports connected only while both are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import TimeoutError as RedisTimeoutError

from ..core.durations import check_duration
from ..core.errors import ConfigError, StratacacheError
from ..core.fleet import Invalidation
from ..core.loops import on_fork
from ..core.portal import Portal
from .connection import RedisConnection
from .sender import Sender
from .subscription import Subscription
from .topology import Topology
from .tracking import StateJoin
from .tracking_group import TrackingGroup
from .wire import decode, encode

log = logging.getLogger("stratacache")
_RETRY_EVERY = 0.05  # seconds between publish attempts while the bus is in trouble


class BusUnavailable(StratacacheError):
    """The bus cannot send now (disconnected, or a publish just failed); the engine replays."""


class RedisBus:
    """Invalidation bus over Redis pub/sub; see the module docstring for the failure model.

    Args:
        url: Redis URL of the bus (may be the cache's Redis or a separate one).
        client: an existing ``redis.asyncio.Redis`` or ``RedisCluster`` used for publishing
            (from every event loop, as is); subscribers get their own connections built from
            the same settings.
        connection: a ``RedisConnection`` (one Redis, Cluster or Sentinel) instead of ``url``;
            ``RedisTier.fleet_bus()`` passes the tier's own.
        publish_timeout: seconds a publish may take (default: the connection's
            ``socket_timeout``, the tier's operation timeout); after a failure, or while the
            subscription is down, publishes fail at once (the engine keeps and replays them).
        channel_prefix: channels are ``{channel_prefix}:{namespace}``.
        health_interval: seconds of silence after which the subscriber PINGs; no answer
            within another ``health_interval`` means the bus is down.
        reconnect_min / reconnect_max: exponential backoff bounds between reconnect attempts.
        connect_timeout: seconds a (re)subscribe may take.
        tracking: also use Redis client-side tracking (broadcast mode) so that any write to
            a key of the namespace, by anyone, evicts it from local tiers (Redis >= 6).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        client: Any = None,
        channel_prefix: str = "stratacache",
        health_interval: float = 1.0,
        reconnect_min: float = 0.01,
        reconnect_max: float = 1.0,
        connect_timeout: float = 1.0,
        tracking: bool = False,
        connection: RedisConnection | None = None,
        publish_timeout: float | None = None,
    ) -> None:
        health_interval = check_duration("RedisBus health_interval", health_interval)
        reconnect_min = check_duration("RedisBus reconnect_min", reconnect_min)
        reconnect_max = check_duration("RedisBus reconnect_max", reconnect_max)
        connect_timeout = check_duration("RedisBus connect_timeout", connect_timeout)
        connection = connection or RedisConnection(url)
        if publish_timeout is None:  # the tier's operation timeout, when built from its connection
            publish_timeout = connection.socket_timeout
        publish_timeout = check_duration("RedisBus publish_timeout", publish_timeout)
        if reconnect_max < reconnect_min:
            raise ConfigError("RedisBus reconnect_max must be >= reconnect_min")
        if not channel_prefix:
            raise ConfigError("RedisBus channel_prefix must not be empty")
        self.connection = connection
        self.url = self.connection.url
        #: where subscribers connect and commands go (one Redis, Cluster or Sentinel)
        self.topology = Topology(self.connection, client)
        self.publish_timeout = publish_timeout
        self.channel_prefix = channel_prefix
        self.health_interval = health_interval
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.connect_timeout = connect_timeout
        self.tracking = tracking
        #: the client-side tracking companion while started with ``tracking=True``
        self.tracker: TrackingGroup | None = None
        #: True while subscribed; when False the engine bounds the age of what local tiers serve
        self.connected = False
        #: counters: messages applied, own echoes skipped, published, publish failures, drops
        self.received = 0
        self.echoes = 0
        self.drops = 0
        self.channel = ""
        self._given = client
        self._sender = Sender(self.topology, publish_timeout)
        self._trouble_since: float | None = None  # first failed publish or loss, unresolved
        self._reader: Any = None  # the reader thread's own command client
        self._origin = ""
        self._gen_key = ""
        self._on_message: Callable[[Invalidation], None] = _ignore
        self._on_state: Callable[[bool], None] = _ignore
        self._user_on_message: Callable[[Invalidation], None] = _ignore
        self._user_on_state: Callable[[bool], None] = _ignore
        self._task: asyncio.Task[None] | None = None
        self._attempted: asyncio.Event | None = None
        self._portal = Portal("stratacache-bus", on_exit=self._reader_gone)
        on_fork(self)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(
        self,
        namespace: str,
        origin: str,
        on_message: Callable[[Invalidation], None],
        on_state: Callable[[bool], None],
    ) -> None:
        """Subscribe (waiting for the first attempt); report ``on_state(False)`` if it failed."""
        if self._task is not None and self._portal.running:
            return
        self.channel = f"{self.channel_prefix}:{namespace}"
        self._gen_key = f"{self.channel}:generation"
        self._origin = origin
        self._user_on_message = on_message
        self._user_on_state = on_state
        await asyncio.wrap_future(self._portal.submit(self._start_reader(restart=False)))

    @property
    def running(self) -> bool:
        """Whether the reader thread is alive (``connected`` says whether it is subscribed)."""
        return self._task is not None and self._portal.running

    async def close(self) -> None:
        """Stop the reader and its thread, and release every connection."""
        if self._portal.running and not self._portal.in_portal():
            with contextlib.suppress(Exception):
                await asyncio.wrap_future(self._portal.submit(self._stop_reader()))
        self._portal.stop()
        self._task = self.tracker = None
        await self._sender.close()
        self.connected = False

    def after_fork(self) -> None:
        """In a forked child: forget the parent's thread and connections (never share them)."""
        self._task = self.tracker = self._attempted = self._reader = None
        self.connected = False
        self._sender.after_fork()
        self.topology.forget()

    # -- the reader thread -------------------------------------------------------------------
    async def _start_reader(self, restart: bool) -> None:
        """On the bus thread: subscribe and wait for the first attempt (and the tracker's)."""
        if self._task is not None:
            return  # started meanwhile by another caller
        on_message, on_state = self._user_on_message, self._user_on_state
        self._on_message, self._on_state = on_message, on_state
        self.connected = False
        self._reader = self.topology.own_commands(
            socket_timeout=self.connect_timeout, socket_connect_timeout=self.connect_timeout
        )
        join = StateJoin(on_state) if self.tracking else None
        if join is not None:
            self._on_state = join.bus
        self._attempted = asyncio.Event()
        subscription = Subscription(
            self.topology,
            self._reader,
            self.channel,
            self._gen_key,
            deliver=self._deliver,
            on_up=functools.partial(self._set_state, True),
            on_lost=self._lost,
            on_attempt=self._first_attempt_done,
            health_interval=self.health_interval,
            reconnect_min=self.reconnect_min,
            reconnect_max=self.reconnect_max,
            connect_timeout=self.connect_timeout,
        )
        self._task = asyncio.ensure_future(subscription.run())
        await self._attempted.wait()
        if join is not None:
            self.tracker = TrackingGroup(
                self.topology,
                self._reader,
                f"{self.channel[len(self.channel_prefix) + 1 :]}:",
                on_message,
                join.tracker,
                health_interval=self.health_interval,
                reconnect_min=self.reconnect_min,
                reconnect_max=self.reconnect_max,
                connect_timeout=self.connect_timeout,
            )
            await self.tracker.start()
            join.arm(self.connected, self.tracker.connected)
            if restart and self.connected and self.tracker.connected:
                on_state(True)
        elif restart and self.connected:
            on_state(True)  # the loss was reported when the old reader died
        elif not self.connected:
            on_state(False)

    async def _stop_reader(self) -> None:
        """On the bus thread: stop the reader and the tracker, close the subscriber."""
        task, self._task = self._task, None
        tracker, self.tracker = self.tracker, None
        if tracker is not None:
            await tracker.close()
        if task is not None:
            # Cancel until it ends: a cancel that races a redis-py read timeout can be
            # swallowed (Python 3.11 asyncio.timeout), which would leave close() waiting.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        await self.topology.close()
        reader, self._reader = self._reader, None
        if reader is not None:
            with contextlib.suppress(Exception):
                await reader.aclose()

    def _reader_gone(self) -> None:
        """The bus thread's loop stopped without ``close()``: report the loss, start anew."""
        self._task = self.tracker = None
        self.drops += 1
        log.warning("stratacache: invalidation bus thread stopped; distrusting L1, restarting")
        self.connected = False
        self._user_on_state(False)  # a repeated False is harmless; a missed one is not
        self._portal.submit(self._start_reader(restart=True))

    # -- publishing ------------------------------------------------------------------------
    async def publish(self, message: Invalidation) -> None:
        """Send ``message`` to every subscriber of the namespace.

        When Redis hangs (a publish times out, a PING goes unanswered), a publish keeps
        trying and returns (raising) no earlier than ``2 * health_interval`` after the
        first sign: by then every other process has noticed the loss too and serves only
        entries younger than its staleness bound, so the caller never proceeds while they
        still trust old copies. Otherwise (and after that) a publish while the bus is down
        fails at once, until the bus is back.

        Raises:
            BusUnavailable: the bus is down (the engine keeps the message and replays it).
            redis.RedisError: the publish failed.
        """
        while True:
            error: Exception | None = self._unavailable()
            if error is None:
                try:
                    await self._sender.publish(self.channel, message)
                    return
                except Exception as exc:
                    self._troubled(exc)
                    error = exc
            wait = self._settle_wait()
            if wait <= 0:
                raise error
            await asyncio.sleep(min(wait, _RETRY_EVERY))

    def publish_sync(self, message: Invalidation) -> None:
        """``publish`` for sync callers: a blocking client, no event loop (same rules)."""
        if self._given is not None:  # only the caller's asyncio client knows where to go
            self._portal.run(self.publish(message))
            return
        while True:
            error: Exception | None = self._unavailable()
            if error is None:
                try:
                    self._sender.publish_sync(self.channel, message)
                    return
                except Exception as exc:
                    self._troubled(exc)
                    error = exc
            wait = self._settle_wait()
            if wait <= 0:
                raise error
            time.sleep(min(wait, _RETRY_EVERY))

    @property
    def published(self) -> int:
        """Messages sent."""
        return self._sender.published

    def _unavailable(self) -> BusUnavailable | None:
        if not self.channel:
            return BusUnavailable("RedisBus.publish before start")
        if not self.connected:
            return BusUnavailable("the invalidation bus is disconnected")
        return None

    def _troubled(self, exc: BaseException) -> None:
        """Note a sign that Redis hangs (a timeout, a missing PONG). A refused or reset
        connection is not one: the other processes' subscriptions saw it at once."""
        hung = isinstance(exc, TimeoutError | RedisTimeoutError) or "no PONG" in str(exc)
        if hung and self._trouble_since is None:
            self._trouble_since = time.monotonic()

    def _settle_wait(self) -> float:
        """Seconds until other processes have surely noticed the trouble (0: already)."""
        since = self._trouble_since
        if since is None:
            return 0.0
        return since + 2 * self.health_interval - time.monotonic()

    # -- generation store --------------------------------------------------------------------
    async def load_generation(self) -> int:
        """The namespace generation stored in Redis (0 when never flushed)."""
        return int(await self._sender.client().get(self._gen_key) or 0)

    async def bump_generation(self) -> int:
        """INCR the namespace generation (never expires: a reset would revive old keys)."""
        return int(await self._sender.client().incr(self._gen_key))

    # -- reader ------------------------------------------------------------------------------
    def _lost(self, exc: BaseException) -> None:
        """A (re)subscribe failed or the subscription died (``Subscription.on_lost``)."""
        self._troubled(exc)
        if self.connected:
            self.drops += 1
            log.warning("stratacache: invalidation bus lost (%r)", exc)
        else:
            log.debug("stratacache: invalidation bus connect failed (%r)", exc)
        self._set_state(False)

    def _deliver(self, message: Invalidation) -> None:
        if message.origin == self._origin:
            self.echoes += 1
            return
        self.received += 1
        try:
            self._on_message(message)
        except Exception as exc:  # the engine's handler must not kill the reader
            log.warning("stratacache: applying a bus message failed: %r", exc)

    def _first_attempt_done(self) -> None:
        if self._attempted is not None:
            self._attempted.set()

    def _set_state(self, connected: bool) -> None:
        if connected:
            self._trouble_since = None
        if connected != self.connected:
            self.connected = connected
            # the first outcome is reported by ``start``: the engine starts out trusting L1
            if self._attempted is not None and self._attempted.is_set():
                self._on_state(connected)


def _ignore(*_: Any) -> None:
    return None


__all__ = ["BusUnavailable", "RedisBus", "decode", "encode"]

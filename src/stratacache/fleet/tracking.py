"""Server-assisted invalidation: Redis client-side tracking in broadcast mode (``RedisBus(tracking=True)``).

The bus only hears about writes made through stratacache. With tracking on, the
Redis server itself reports every change of a key under ``{namespace}:`` (a raw
``SET`` by another program, a ``DEL``, an expiry or an eviction), and the key is
dropped from this process's local tiers:

- a pub/sub connection (RESP2) subscribes to ``__redis__:invalidate``;
- a second connection, held for the tracker's lifetime, runs
  ``CLIENT TRACKING ON REDIRECT <pub/sub client id> BCAST PREFIX {namespace}:``;
- each message carries the changed keys (nil: the server flushed everything,
  which drops the local tiers).

Either connection failing is reported like a lost bus (``on_state(False)``: the
engine drops and distrusts its local tiers), and both are rebuilt with backoff;
tracking is re-enabled before ``on_state(True)``. A server without tracking
(Redis < 6, or ``CLIENT`` disabled) is logged once and the tracker stays idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ResponseError

from ..core.errors import StratacacheError
from ..core.fleet import Invalidation

log = logging.getLogger("stratacache")

CHANNEL = "__redis__:invalidate"
ORIGIN = "redis-tracking"


class TrackingUnsupported(StratacacheError):
    """The server refused ``CLIENT ID`` / ``CLIENT TRACKING`` (handled inside the tracker)."""


class StateJoin:
    """Reports ``connected`` to the engine only while both the bus and the tracker are up."""

    def __init__(self, on_state: Callable[[bool], None]) -> None:
        self._on_state = on_state
        self._bus = False
        self._tracker = False
        self._reported = True  # the engine starts out trusting its local tiers
        self._armed = False

    def bus(self, connected: bool) -> None:
        self._bus = connected
        self._report()

    def tracker(self, connected: bool) -> None:
        self._tracker = connected
        self._report()

    def arm(self, bus: bool, tracker: bool) -> None:
        """Start reporting (after both first attempts), with their current outcomes."""
        self._bus, self._tracker, self._armed = bus, tracker, True
        self._report()

    def _report(self) -> None:
        connected = self._bus and self._tracker
        if self._armed and connected != self._reported:
            self._reported = connected
            self._on_state(connected)


class RedisTracker:
    """Turns Redis tracking invalidations for ``prefix`` into local ``Invalidation`` messages.

    Args:
        connect: builds a new plain ``redis.asyncio.Redis`` on the node to watch (called on
            every (re)connect, so the node may change: a Sentinel failover); RESP2 is forced.
        prefix: the tracked key prefix (``{namespace}:``).
        on_message: the engine's handler for remote messages.
        on_state: called with ``True``/``False`` when the tracker comes up or goes down.
        health_interval / reconnect_min / reconnect_max / connect_timeout: as for ``RedisBus``.
    """

    def __init__(
        self,
        connect: Callable[..., Awaitable[Any]],
        prefix: str,
        on_message: Callable[[Invalidation], None],
        on_state: Callable[[bool], None],
        *,
        health_interval: float,
        reconnect_min: float,
        reconnect_max: float,
        connect_timeout: float,
    ) -> None:
        self._connect = connect
        self.prefix = prefix
        self.health_interval = health_interval
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.connect_timeout = connect_timeout
        #: True while tracking is on (or when the server cannot track: nothing to watch)
        self.connected = False
        #: False once the server refused tracking
        self.supported = True
        #: counters: tracking messages applied, connection losses
        self.received = 0
        self.drops = 0
        #: server client id of the tracking connection (for tests and diagnostics)
        self.tracking_client_id: int | None = None
        self._on_message = on_message
        self._on_state = on_state
        self._task: asyncio.Task[None] | None = None
        self._attempted = asyncio.Event()

    async def start(self) -> None:
        """Enable tracking (waiting for the first attempt)."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        await self._attempted.wait()

    async def close(self) -> None:
        """Stop and release both connections."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected = False

    # -- loop ------------------------------------------------------------------------------
    async def _run(self) -> None:
        delay = self.reconnect_min
        while True:
            client: Any = None
            pubsub: Any = None
            tracking: Any = None
            try:
                # RESP2: the redirect target must be a pub/sub subscriber
                client = await self._connect(protocol=2)
                pubsub = client.pubsub()
                tracking = await client.connection_pool.get_connection()
                await asyncio.wait_for(self._enable(pubsub, tracking), self.connect_timeout)
                self._set_state(True)
                self._attempted.set()
                delay = self.reconnect_min
                await self._watch(pubsub, tracking)
            except asyncio.CancelledError:
                raise
            except TrackingUnsupported as exc:
                self.supported = False
                log.warning("stratacache: Redis client-side tracking unavailable (%s)", exc)
                self._set_state(True)  # nothing to watch: the plain bus decides alone
                return
            except Exception as exc:
                if self.connected:
                    self.drops += 1
                    log.warning("stratacache: Redis tracking lost (%r); distrusting L1", exc)
                self._set_state(False)
            finally:
                self._attempted.set()
                self.tracking_client_id = None
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()
                if tracking is not None:
                    with contextlib.suppress(Exception):
                        await tracking.disconnect()
                if client is not None:
                    with contextlib.suppress(Exception):
                        await client.aclose()
                        await client.connection_pool.disconnect()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max)

    async def _enable(self, pubsub: Any, tracking: Any) -> None:
        """Subscribe the pub/sub connection, then point the tracking connection at it."""
        await pubsub.connect()
        target = await _command(pubsub.connection, "CLIENT", "ID")
        await pubsub.subscribe(CHANNEL)
        while True:
            reply = await pubsub.get_message(timeout=self.connect_timeout)
            if reply is not None and reply["type"] == "subscribe":
                break
        self.tracking_client_id = int(await _command(tracking, "CLIENT", "ID"))
        await _command(
            tracking, "CLIENT", "TRACKING", "ON", "REDIRECT", target, "BCAST", "PREFIX", self.prefix
        )

    async def _watch(self, pubsub: Any, tracking: Any) -> None:
        """Apply messages; fail as soon as either connection fails."""
        listen = asyncio.ensure_future(self._listen(pubsub))
        guard = asyncio.ensure_future(self._guard(tracking))
        try:
            done, _ = await asyncio.wait((listen, guard), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises the failure
            raise ConnectionError("Redis tracking watcher stopped")
        finally:
            for task in (listen, guard):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _listen(self, pubsub: Any) -> None:
        """Apply ``__redis__:invalidate`` messages; PING when quiet (no PONG in time → down)."""
        await listen_with_health(
            pubsub, self.health_interval, self._deliver, "the tracking channel"
        )

    async def _guard(self, tracking: Any) -> None:
        """Watch the otherwise silent tracking connection: EOF at once, half-open by PING."""
        while True:
            data = await tracking.read_response(timeout=self.health_interval)
            if data is not None:
                continue  # nothing is expected here; ignore
            await tracking.send_command("PING")
            if await tracking.read_response(timeout=self.health_interval) is None:
                raise ConnectionError(
                    f"no PONG on the tracking connection within {self.health_interval}s"
                )

    def _deliver(self, data: Any) -> None:
        if data is None:
            message = Invalidation(clear=True, reason="tracking")  # origin "": no user-level clear
        elif isinstance(data, list):
            keys = tuple(k.decode() if isinstance(k, bytes) else str(k) for k in data)
            message = Invalidation(keys=keys, origin=ORIGIN, reason="tracking")
        else:
            return
        self.received += 1
        try:
            self._on_message(message)
        except Exception as exc:  # the engine's handler must not kill the reader
            log.warning("stratacache: applying a tracking invalidation failed: %r", exc)

    def _set_state(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self._on_state(connected)


async def _command(connection: Any, *args: Any) -> Any:
    """Run one command on a raw connection; a refusal means tracking is unavailable."""
    await connection.send_command(*args)
    try:
        return await connection.read_response()
    except ResponseError as exc:
        raise TrackingUnsupported(str(exc)) from exc


async def listen_with_health(
    pubsub: Any,
    interval: float,
    deliver: Callable[[Any], None],
    what: str,
    check: Callable[[], Awaitable[bool]] | None = None,
) -> None:
    """Hand every pub/sub message's data to ``deliver`` until the connection fails.

    A connection quiet for ``interval`` gets a PING; no reply within another ``interval``
    raises ``ConnectionError`` (a half-open socket would otherwise go unnoticed). So does
    a shard channel taken from us (``sunsubscribe``: its slot moved) and, when quiet, a
    ``check`` that answers False (the node is no longer the one to listen on).
    """
    loop = asyncio.get_running_loop()
    last_heard = loop.time()
    ping_sent: float | None = None
    while True:
        reply = await pubsub.get_message(timeout=interval)
        now = loop.time()
        if reply is not None:
            last_heard, ping_sent = now, None
            kind = reply["type"]
            if kind in ("message", "smessage"):
                deliver(reply["data"])
            elif kind == "sunsubscribe":
                raise ConnectionError(f"{what} moved to another node")
            continue
        if ping_sent is not None and now - ping_sent > interval:
            raise ConnectionError(f"no PONG on {what} within {interval}s")
        if ping_sent is None and now - last_heard >= interval:
            if check is not None and not await check():
                raise ConnectionError(f"{what}: the primary moved")
            await pubsub.ping()
            ping_sent = now


__all__ = ["RedisTracker", "StateJoin", "TrackingUnsupported", "listen_with_health"]

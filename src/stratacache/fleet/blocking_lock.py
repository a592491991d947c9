"""``RedisLock``'s blocking side, for synchronous callers (``cache.sync``, sync functions).

``BlockingLock`` has a ``redis.Redis`` client of its own (no event-loop hop per
call) running the same Lua scripts on the same keys and channels as
``RedisLock``, so a sync caller in one process and an async caller in another
share one lock. One pattern subscription per lock, read by a daemon thread
(``ReleaseListener``), wakes each waiting thread through a ``threading.Event``;
while it is down, waiters poll the lock with backoff.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import RedisError

from ..core.errors import ConfigError
from ..core.fleet import LockAttempt
from ..core.loops import on_fork
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

if TYPE_CHECKING:
    from .lock import RedisLock

log = logging.getLogger("stratacache")
_RECHECK = 1.0  # a subscribed waiter looks this often whether the subscription held
#: connection options an asyncio client's pool shares with a blocking one
_OPTIONS = frozenset(
    "host port db username password path client_name protocol socket_timeout "  # noqa: SIM905
    "socket_connect_timeout socket_keepalive socket_keepalive_options encoding "
    "encoding_errors decode_responses health_check_interval ssl_keyfile ssl_certfile "
    "ssl_cert_reqs ssl_ca_certs ssl_ca_data ssl_check_hostname ssl_min_version ssl_ciphers".split()
)


def blocking_client(url: str, client: Any) -> Any:
    """A ``redis.Redis`` on ``url``, or with the connection options of asyncio ``client``."""
    if client is None:
        return redis.Redis.from_url(url)
    pool = getattr(client, "connection_pool", None)
    if pool is None:
        raise ConfigError("RedisLock(client=...) has no connection pool: pass sync_client= too")
    options = {k: v for k, v in pool.connection_kwargs.items() if k in _OPTIONS}
    kind = {
        "SSLConnection": redis.SSLConnection,
        "UnixDomainSocketConnection": redis.UnixDomainSocketConnection,
    }.get(pool.connection_class.__name__, redis.Connection)
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=kind, **options))


class ReleaseListener:
    """One blocking pattern subscription on a daemon thread, waking per-key events."""

    def __init__(self, client: Any, pattern: str, cut: int) -> None:
        self.client = client
        self.pattern = pattern
        self.cut = cut  # length of the channel prefix before the cache key
        self.ready = threading.Event()  # subscribed: waiters can count on a message
        self.epoch = 0  # bumped on every (re)subscription: messages may have been lost before
        self._tried = threading.Event()
        self._stop = threading.Event()
        self._mutex = threading.Lock()
        self._waiters: dict[str, list[threading.Event]] = {}
        self._released: OrderedDict[str, str] = OrderedDict()
        self._thread = threading.Thread(
            target=self._run, name="stratacache-lock-listener", daemon=True
        )

    def start(self, timeout: float) -> None:
        """Start the thread; wait (bounded) for its first attempt to subscribe."""
        self._thread.start()
        self._tried.wait(timeout)

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        delay = POLL_MIN
        while not self._stop.is_set():
            pubsub = self.client.pubsub()
            try:
                pubsub.psubscribe(self.pattern)
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    if msg["type"] == "psubscribe":  # also after redis-py reconnects by itself
                        self.epoch += 1
                        self.ready.set()
                        self._tried.set()
                        delay = POLL_MIN
                    elif msg["type"] == "pmessage":
                        self._on_release(text(msg["channel"])[self.cut :], text(msg["data"]))
            except Exception as exc:  # the thread must outlive any error: waiters poll meanwhile
                self.ready.clear()
                self._tried.set()
                if self._stop.is_set():
                    break
                log.warning("stratacache: lock subscription lost, sync waiters poll: %r", exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 1.0)
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
        self.ready.clear()

    def _on_release(self, key: str, token: str) -> None:
        with self._mutex:
            self._released[key] = token
            self._released.move_to_end(key)
            while len(self._released) > RECENT:
                self._released.popitem(last=False)
            waiters = self._waiters.pop(key, ())
        for event in waiters:
            event.set()

    def register(self, key: str, token: str) -> threading.Event | None:
        """An event set when ``token``'s lock on ``key`` is released (None: it already was)."""
        with self._mutex:
            if self._released.get(key) == token:
                return None
            event = threading.Event()
            self._waiters.setdefault(key, []).append(event)
            return event

    def unregister(self, key: str, event: threading.Event) -> None:
        with self._mutex:
            waiters = self._waiters.get(key)
            if waiters is not None and event in waiters:
                waiters.remove(event)
                if not waiters:
                    del self._waiters[key]


class BlockingLock:
    """``RedisLock``'s blocking side (reach it through ``RedisLock.acquire_sync`` and co.)."""

    def __init__(self, owner: RedisLock, client: Any, sync_client: Any) -> None:
        self.owner = owner
        self._async_client = client
        self._given = sync_client
        self._client: Any = sync_client
        self._scripts: dict[str, Any] = {}
        self._listener: ReleaseListener | None = None
        self._start = threading.Lock()
        on_fork(self)

    def after_fork(self) -> None:
        """In a forked child the listener thread is gone: start a new one on next use."""
        self._start = threading.Lock()
        self._listener = None  # redis-py's blocking pools reconnect in the child themselves

    @property
    def started(self) -> bool:
        return self._listener is not None

    @property
    def subscribed(self) -> bool:
        listener = self._listener
        return listener is not None and listener.ready.is_set()

    def start(self) -> None:
        if self._listener is not None:
            return
        with self._start:
            if self._listener is not None:
                return
            if self._client is None:
                if self._async_client is None:
                    self._client = self.owner.connection.client(asynchronous=False)
                else:
                    self._client = blocking_client(self.owner.url, self._async_client)
            answered = True
            for name, src in SCRIPTS:
                self._scripts[name] = self._client.register_script(src)
                if not answered:
                    continue  # loaded on first use
                try:
                    self._client.script_load(src)
                except UNANSWERED:
                    answered = False  # each would wait as long: Redis is down or hung
                except RedisError:
                    pass  # e.g. SCRIPT not allowed: loaded on first use
            channel = self.owner.channel
            listener = ReleaseListener(self._client, channel("*"), len(channel("")))
            # bounded: without the subscription waiters poll
            listener.start(timeout=2.0 if answered else 0.0)
            self._listener = listener

    def close(self) -> None:
        with self._start:
            listener, self._listener = self._listener, None
            if listener is not None:
                listener.stop()
            if self._client is not None and self._given is None:
                self._client.close()  # disconnects the subscription too: the thread ends
                self._client = None
            if listener is not None:
                listener.join(timeout=2.0)

    def acquire(self, key: str) -> LockAttempt:
        self.start()
        token = secrets.token_hex(16)
        try:
            reply = self._scripts["acquire"](
                keys=[self.owner.lock_key(key)], args=[token, int(self.owner.lease * 1000)]
            )
        except UNANSWERED:  # it may still run when Redis answers: release it then
            threading.Thread(
                target=self._release_orphan,
                args=(key, token),
                name="stratacache-lock-orphan",
                daemon=True,
            ).start()
            raise
        return attempt(reply)

    def _release_orphan(self, key: str, token: str) -> None:
        """Release the token of an acquire that got no answer (``orphan_delays``)."""
        for delay in orphan_delays(self.owner.lease):
            time.sleep(delay)
            if not self.started:  # closed meanwhile (a release would start it again)
                return
            try:
                self.release(key, token)
            except (RedisError, OSError):  # still unreachable: try again
                continue
            return

    def release(self, key: str, token: str) -> bool:
        self.start()
        released = self._scripts["release"](
            keys=[self.owner.lock_key(key)], args=[token, self.owner.channel(key)]
        )
        return bool(released)

    def renew_once(self, key: str, token: str) -> bool:
        self.start()
        renewed = self._scripts["renew"](
            keys=[self.owner.lock_key(key)], args=[token, int(self.owner.lease * 1000)]
        )
        return bool(renewed)

    @contextlib.contextmanager
    def hold(self, key: str, token: str) -> Iterator[None]:
        """Renew our lease on ``key`` every ``lease / 3`` on a daemon thread inside the block."""
        if not self.owner.renew:
            yield
            return
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(self.owner.lease / 3):
                try:
                    if not self.renew_once(key, token):
                        return
                except (RedisError, OSError) as exc:
                    log.warning("stratacache: lock renewal of %r failed: %r", key, exc)

        threading.Thread(target=renew, name="stratacache-lock-renew", daemon=True).start()
        try:
            yield
        finally:
            stop.set()  # a renewal still in flight is harmless: it checks our token

    def wait(self, key: str, holder: LockAttempt, timeout: float) -> bool:
        """Block up to ``timeout`` (and at most to the holder's lease end) for its release."""
        self.start()
        listener = self._listener
        if listener is None:  # closed meanwhile
            return False
        event = listener.register(key, holder.token)
        if event is None:
            return True  # released between the acquire reply and now
        epoch = listener.epoch
        # Wake at the holder's lease end at the latest, to take over from a dead holder.
        bound = holder.ttl + 0.005 if holder.ttl > 0 else POLL_MIN
        deadline = time.monotonic() + min(timeout, bound)
        delay = POLL_MIN
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                polling = not listener.ready.is_set()
                if event.wait(min(delay if polling else _RECHECK, remaining)):
                    return True
                if polling or listener.epoch != epoch:
                    # No message will come, or one may have been lost while resubscribing:
                    # look at the lock itself (backing off while the subscription is down).
                    epoch = listener.epoch
                    if polling:
                        delay = min(delay * 2, POLL_MAX)
                    if self._gone(key, holder.token):
                        return True
            return False
        finally:
            listener.unregister(key, event)

    def _gone(self, key: str, token: str) -> bool:
        """Is ``token`` no longer the holder of ``key`` (released or expired)?"""
        try:
            current = self._client.get(self.owner.lock_key(key))
        except (RedisError, OSError, AttributeError):  # AttributeError: closed meanwhile
            return False
        return current is None or text(current) != token

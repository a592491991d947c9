"""Event-loop and process awareness: values kept per event loop, and resets after ``fork``.

Async clients (redis-py's, SQLAlchemy's) are bound to the event loop they were
first used on: their sockets belong to it, and once it is closed every call
fails with ``Event loop is closed``. ``PerLoop`` keeps one value per running
loop instead, built on first use there, and lets go of the values of loops
that have closed.

After ``os.fork()`` the child has copies of the parent's sockets and locks but
none of its threads. Objects that hold such things register with
``on_fork(obj)``; in the child, right after the fork, ``obj.after_fork()`` runs
(from ``os.register_at_fork``), so the child builds its own connections and
threads on first use instead of sharing or waiting on the parent's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

log = logging.getLogger("stratacache")
T = TypeVar("T")


class PerLoop(Generic[T]):
    """One value per running event loop, built by ``factory`` on first use in that loop.

    ``get()`` costs one ``get_running_loop`` and an identity check when the loop is the
    last one seen. Values of loops that are closed are handed to ``discard`` (which must
    not need their loop) the next time a new loop shows up, or on ``clear``.

    Args:
        factory: builds the value for the running loop.
        discard: releases a value whose loop is gone (or all values on ``clear``).
    """

    def __init__(self, factory: Callable[[], T], discard: Callable[[T], None]) -> None:
        self._factory = factory
        self._discard = discard
        self._loop: asyncio.AbstractEventLoop | None = None
        self._value: T | None = None
        self._values: dict[asyncio.AbstractEventLoop, T] = {}
        self._lock = threading.Lock()

    def get(self) -> T:
        """The value of the running loop (raises ``RuntimeError`` outside a running loop)."""
        loop = asyncio.get_running_loop()
        if loop is self._loop:
            return self._value  # type: ignore[return-value]
        return self._switch(loop)

    def _switch(self, loop: asyncio.AbstractEventLoop) -> T:
        with self._lock:
            for old in [lp for lp in self._values if lp.is_closed()]:
                self._release(self._values.pop(old))
            value = self._values.get(loop)
            if value is None:
                value = self._values[loop] = self._factory()
            self._loop, self._value = loop, value
            return value

    def pop_current(self) -> T | None:
        """Remove and return the running loop's value (None if it has none)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if loop is self._loop:
                self._loop = self._value = None
            return self._values.pop(loop, None)

    def clear(self) -> None:
        """Hand every value to ``discard`` and forget them all."""
        with self._lock:
            values, self._values = list(self._values.values()), {}
            self._loop = self._value = None
        for value in values:
            self._release(value)

    def after_fork(self) -> None:
        """In a forked child: ``clear`` (the lock may have been held by a parent thread)."""
        self._lock = threading.Lock()
        self.clear()

    def __len__(self) -> int:
        return len(self._values)

    def _release(self, value: T) -> None:
        try:
            self._discard(value)
        except Exception as exc:  # releasing a dead loop's value must never fail a call
            log.debug("stratacache: releasing a value of a closed event loop failed: %r", exc)


class HomeLoop:
    """The event loop a loop-bound client lives on; calls made on other loops go to it.

    The first loop to run a call becomes home. A call on another loop is handed to the
    home loop while that runs, waiting at most ``hop_timeout`` seconds (a home loop whose
    thread is blocked in sync code waiting for this very call would never answer). Once
    the home loop has stopped or closed, the caller's loop becomes home and ``release``
    drops what the client held on the old one.
    """

    def __init__(self, release: Callable[[], None], hop_timeout: float = 5.0) -> None:
        self.release = release
        self.hop_timeout = hop_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the home loop (the running one if it is home or none runs)."""
        loop = asyncio.get_running_loop()
        home = self._loop
        if home is not loop and (home is None or home.is_closed() or not home.is_running()):
            with self._lock:
                if self._loop is home:  # not moved by another thread meanwhile
                    if home is not None:
                        self._release()
                    self._loop = loop
                home = self._loop
        if home is loop or home is None:  # home is never None here; the check is for mypy
            return await coro
        future = asyncio.run_coroutine_threadsafe(coro, home)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.hop_timeout)
        except TimeoutError:
            future.cancel()
            raise TimeoutError(
                f"the client's event loop did not answer within {self.hop_timeout}s (is sync "
                "code on that loop's thread waiting for this call?)"
            ) from None

    def forget(self) -> None:
        """In a forked child: no loop is home; the parent's connections are let go."""
        self._lock = threading.Lock()
        self._loop = None
        self._release()

    def _release(self) -> None:
        try:
            self.release()
        except Exception as exc:  # letting a dead loop's client go must never fail a call
            log.debug("stratacache: releasing a client of another event loop failed: %r", exc)


def abandon(client: Any) -> None:
    """Release an asyncio client whose event loop is gone (or a parent's, after ``fork``).

    ``aclose()`` would need the client's own loop; instead the socket of each connection
    is closed directly (in a forked child that drops only the child's copy: the parent's
    connection stays open) and the client is left to the garbage collector. Written for
    redis-py's asyncio clients (standalone, Sentinel, Cluster); anything else is left as is.
    """
    for conn in _connections(client):
        transport: Any = getattr(getattr(conn, "_writer", None), "transport", None)
        sock = getattr(transport, "_sock", None)
        if sock is not None:
            sock.close()
            # what the transport's own close would do next, minus the dead loop's callbacks
            transport._sock = None
            transport._closing = True
        conn._reader = conn._writer = None


def _connections(client: Any) -> list[Any]:
    manager = getattr(client, "nodes_manager", None)
    if manager is not None:  # a cluster: one pool of connections per node
        nodes = list(getattr(manager, "nodes_cache", {}).values())
        return [c for node in nodes for c in getattr(node, "_connections", ())]
    pool = getattr(client, "connection_pool", None)
    available = list(getattr(pool, "_available_connections", ()))
    return available + list(getattr(pool, "_in_use_connections", ()))


class ForkAware(Protocol):
    """Something that must reset its connections, threads or locks in a forked child."""

    def after_fork(self) -> None:
        """Called in the child right after ``os.fork()`` (single-threaded; must not block)."""


_registered: weakref.WeakSet[ForkAware] = weakref.WeakSet()
_hooked = False
_hook_lock = threading.Lock()


def on_fork(obj: ForkAware) -> None:
    """Have ``obj.after_fork()`` run in every child process forked from now on."""
    global _hooked
    with _hook_lock:
        _registered.add(obj)
        if not _hooked and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _hooked = True


def _after_fork_in_child() -> None:
    global _hook_lock
    _hook_lock = threading.Lock()  # a parent thread may have held it during the fork
    for obj in list(_registered):
        try:
            obj.after_fork()
        except Exception as exc:  # one failing reset must not stop the others
            log.warning("stratacache: resetting %r after fork failed: %r", obj, exc)


__all__ = ["ForkAware", "HomeLoop", "PerLoop", "abandon", "on_fork"]

"""The response bodies ``WSGICacheMiddleware`` hands to the server.

Why: a WSGI body is an iterable the server consumes (and must close) after the
middleware returned; passing it through lazily while copying it, storing the copy
when complete, waking collapsed requests and releasing the fleet lock happen there,
apart from the request handling.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from .decisions import Plan, Request

if TYPE_CHECKING:
    from ..core.fleet import SyncFleetLock
    from .wsgi import WSGICacheMiddleware


class Flight(threading.Event):
    """Set when the request running the app is done; ``failed``: the app erred and a
    stale-if-error copy answered, so the waiting requests answer with theirs."""

    failed = False


def close_result(result: object) -> None:
    """Close a WSGI iterable the way servers must (when it has ``close``)."""
    close = getattr(result, "close", None)
    if close is not None:
        close()


class Released:
    """A response body that releases the fleet lock once it is consumed or closed."""

    def __init__(self, body: Iterable[bytes], fleet: SyncFleetLock, key: str, token: str) -> None:
        self.body, self.fleet, self.key, self.token = body, fleet, key, token

    def __iter__(self) -> Iterator[bytes]:
        yield from self.body
        self._release()

    def _release(self) -> None:
        if self.token:
            token, self.token = self.token, ""
            with contextlib.suppress(Exception):  # it expires after its lease
                self.fleet.release_sync(self.key, token)

    def close(self) -> None:
        try:
            close_result(self.body)
        finally:
            self._release()


class Passthrough:
    """The app's body, after what ``write`` or the first iteration already produced."""

    def __init__(self, head: list[bytes], rest: Iterator[bytes], result: object) -> None:
        self.head, self.rest, self.result = head, rest, result

    def __iter__(self) -> Iterator[bytes]:
        yield from self.head
        yield from self.rest

    def close(self) -> None:
        close_result(self.result)


class Caching(Passthrough):
    """Passes the body through while copying it; stores the copy once it is complete."""

    def __init__(
        self,
        owner: WSGICacheMiddleware,
        req: Request,
        plan: Plan,
        head: list[bytes],
        rest: Iterator[bytes],
        result: object,
        flight: tuple[str, Flight] | None = None,
    ) -> None:
        super().__init__(head, rest, result)
        self.owner, self.req, self.plan, self.flight = owner, req, plan, flight
        self.stored = False

    def __iter__(self) -> Iterator[bytes]:
        copy: list[bytes] = []
        size = 0
        limit = self.owner.policy.max_body_size
        for chunk in super().__iter__():
            if self.plan.store:
                size += len(chunk)
                if size > limit:
                    self.plan.store = False
                    copy.clear()
                    self._wake()
                else:
                    copy.append(chunk)
                    if size == self.plan.length:
                        self._finish(copy)  # last chunk: store before the client can have it
            yield chunk
        if self.plan.store and self.owner.policy.complete(self.plan, size):
            self._finish(copy)

    def _finish(self, copy: list[bytes]) -> None:
        if not self.stored:
            self.stored = True
            self.owner.store(self.req, self.plan, b"".join(copy))
            self._wake()

    def _wake(self) -> None:
        if self.flight is not None:
            self.owner.land(*self.flight)

    def close(self) -> None:
        self._wake()  # a response abandoned before it was stored must not hold the others
        super().close()

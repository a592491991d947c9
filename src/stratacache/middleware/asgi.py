"""``CacheMiddleware``: a pure ASGI shared HTTP cache in front of any ASGI app.

It wraps ``send`` (the way Starlette's ``GZipResponder`` does) rather than
building request/response objects: a hit never reaches the app, a miss is
streamed to the client chunk by chunk while a copy is kept up to
``max_body_size`` and stored when the last chunk goes out (before it is
sent, so a client that has the whole response finds it cached). Every
decision is taken by ``HttpCachePolicy``; this module only moves messages.

Request collapsing: concurrent misses of one URL variant run the app once
per process; the others wait (up to ``collapse_timeout`` seconds) for the
stored response, then answer from it, or go to the app themselves when
nothing usable was stored. Requests holding a stale-if-error copy collapse
the same way: when the one that ran the app got an error, the others answer
with their stale copy without running the app again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from .parsing import invalidates, is_error_status, request_headers
from .policy import HttpCachePolicy, Lookup, Plan, Request, Verdict
from .purge import purge_targets
from .rules import CacheRule, Directives, directives_in_effect

if TYPE_CHECKING:
    from ..core.fleet import FleetLock
    from ..engine.cache import Cache

__all__ = ["CacheMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("stratacache.middleware")
_STRIPPED_ON_REFRESH = frozenset(
    {b"if-none-match", b"if-modified-since", b"cache-control", b"pragma"}
)


class _Flight(asyncio.Event):
    """Set when the request running the app is done; ``failed``: the app erred and a
    stale-if-error copy answered, so the waiting requests answer with theirs."""

    failed = False


class CacheMiddleware:
    """RFC 9111 shared cache for ASGI apps: ``app.add_middleware(CacheMiddleware, cache=cache)``.

    Args:
        app: the ASGI app to wrap.
        cache: a ``stratacache.Cache``; its tiers hold the responses.
        rules: ``CacheRule`` objects (first match wins) giving per-path ttl, tags, Vary extras
            or turning caching off.
        default_ttl: freshness for responses that state none (None: only cache responses with
            ``max-age``/``s-maxage``/``Expires``, or heuristically from ``Last-Modified``).
        max_body_size: larger bodies are passed through and not stored.
        allow_set_cookie: store responses that set cookies (the stored copy drops ``Set-Cookie``).
        share_authorized: answer and store requests with ``Authorization`` like any other.
        heuristic: derive freshness from ``Last-Modified`` when nothing else says (RFC 9111
            §4.2.2), capped at ``heuristic_max`` seconds.
        tags_header: response header an app may set to tag its response (removed before sending).
        collapse: concurrent misses of one URL variant run the app once per process; the
            others wait for its stored response (nginx ``proxy_cache_lock``). ``"fleet"``:
            once across processes too, under the cache's fleet lock (``ConfigError`` here
            when the cache has none).
        collapse_timeout: seconds a collapsed request waits before going to the app itself.
        ignore_query_params: query parameters left out of the key (e.g. ``utm_source``).
        ignore_cookies: cookie names or patterns (``_ga*``) no page depends on; other cookies
            keep a request from the cache unless its rule opts in (``middleware.cookies``).
        key_prefix: prefix of the cache keys of stored responses.
        clock: time source for ages and freshness (tests inject a ``ManualClock``).
    """

    def __init__(
        self,
        app: ASGIApp,
        cache: Cache,
        *,
        rules: Iterable[CacheRule] = (),
        **options: Any,
    ) -> None:
        self.app = app
        self.cache = cache
        self.policy = HttpCachePolicy(rules=rules, **options)
        self._refreshing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flights: dict[str, _Flight] = {}
        self._fleet = cache.resolve_lock(True) if self.policy.collapse_fleet else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        if method != "GET" and method != "HEAD":
            await self._unsafe(scope, receive, send)
            return
        policy = self.policy
        directives = policy.directives(scope["path"])
        if not directives.enabled:
            await self.app(scope, receive, send)
            return
        req = self._request(scope, method, directives)
        found, variant_key = await self._lookup(req) if req.may_serve else (None, None)
        if policy.only_if_cached_miss(req, found):
            headers = list(policy.GATEWAY_TIMEOUT)
            await send({"type": "http.response.start", "status": 504, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        flight = (
            None if (found is not None and found.answers) else policy.collapse_key(req, variant_key)
        )
        if flight is not None:
            event = self._flights.get(flight)
            if event is None:  # the leader: run the app, wake the others once stored
                self._flights[flight] = event = _Flight()
                try:
                    # A leader that took over from one that just landed finds its response.
                    found, _ = await self._lookup(req)
                    if found is None and self._fleet is not None:
                        found = await self._fleet_lead(
                            self._fleet, scope, receive, send, req, flight
                        )
                        if found is None:
                            return
                    if not (
                        found is not None and found.answers
                    ):  # nothing stored, or only a stale-if-error copy
                        await self._origin(scope, receive, send, req, found, flight)
                        return
                finally:
                    self._land(flight, event)
                await self._serve(scope, receive, send, req, found)
                return
            try:
                await asyncio.wait_for(event.wait(), policy.collapse_timeout)
            except TimeoutError:
                logger.info("collapsed request for %s waited too long; asking the app", req.url)
            if event.failed and found is not None:  # the app just failed: do not ask it again
                await self._answer(send, req, found.in_place_of_error())
                return
            found, _ = await self._lookup(req)
        await self._serve(scope, receive, send, req, found)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, req: Request, found: Lookup | None
    ) -> None:
        if found is None:
            await self._origin(scope, receive, send, req, None)
        elif found.verdict is Verdict.STALE_IF_ERROR:
            await self._origin(scope, receive, send, req, found)
        else:
            if found.revalidate:
                self._refresh(scope, req)
            await self._answer(send, req, found)

    async def _fleet_lead(
        self,
        fleet: FleetLock,
        scope: Scope,
        receive: Receive,
        send: Send,
        req: Request,
        flight: str,
    ) -> Lookup | None:
        """Run the app under the fleet lock, or wait (bounded) for the process that holds it.

        Returns the stored response to answer with, or None once the request was answered.
        """
        lock_key = self.cache.full_key(flight)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.collapse_timeout
        while self.cache.lock_usable(fleet):  # its Redis known down: collapse here only
            try:
                attempt = await fleet.acquire(lock_key)
            except Exception:  # the lock is an optimisation: never fail the request for it
                logger.warning("fleet lock for %s unavailable", req.url, exc_info=True)
                break
            if attempt.owned:
                try:
                    found, _ = await self._lookup(req)
                    if found is not None:
                        return found
                    async with fleet.hold(lock_key, attempt.token):
                        await self._origin(scope, receive, send, req, None, flight)
                    return None
                finally:
                    with contextlib.suppress(Exception):  # it expires after its lease
                        await fleet.release(lock_key, attempt.token)
            remaining = deadline - loop.time()
            if remaining > 0:
                with contextlib.suppress(Exception):
                    await fleet.wait(lock_key, attempt, remaining)
            found, _ = await self._lookup(req)
            if found is not None:
                return found
            if loop.time() >= deadline:
                break
        await self._origin(scope, receive, send, req, None, flight)
        return None

    def _land(self, flight: str, event: _Flight) -> None:
        """Wake the requests collapsed on ``flight`` (idempotent)."""
        if self._flights.get(flight) is event:
            del self._flights[flight]
        event.set()

    def _request(self, scope: Scope, method: str, directives: Directives) -> Request:
        headers = request_headers(scope)
        host = headers.get("host")
        if host is None:
            server = scope.get("server") or ("localhost", None)
            host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
        query = scope.get("query_string", b"").decode("latin-1")
        url = self.policy.url(scope.get("scheme", "http"), host, scope["path"], query)
        return self.policy.request(method, url, scope["path"], headers, directives)

    async def _lookup(self, req: Request) -> tuple[Lookup | None, str | None]:
        """Two-step Vary lookup: a usable stored response judged for this request (or None),
        and the variant key when the URL's Vary is known."""
        primary = await self.cache.get(self.policy.primary_key(req.url))
        variant_key, value = self.policy.resolve_primary(req, primary)
        if variant_key is not None:
            variant = await self.cache.get(variant_key)
            value = variant.get("r") if isinstance(variant, dict) else None
        return self.policy.lookup(req, value), variant_key

    async def _answer(self, send: Send, req: Request, found: Lookup) -> None:
        """Send a stored response (or a 304 for a matching conditional request)."""
        stored = found.stored
        label = b"HIT" if found.verdict is Verdict.FRESH else b"STALE"
        if self.policy.not_modified(req.headers, stored):
            headers = self.policy.not_modified_headers(stored, found.age, label)
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = self.policy.served_headers(stored, found.age, label)
        await send({"type": "http.response.start", "status": stored.status, "headers": headers})
        body = b"" if req.method == "HEAD" else stored.body
        await send({"type": "http.response.body", "body": body})

    async def _origin(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        req: Request,
        fallback: Lookup | None,
        flight: str | None = None,
    ) -> None:
        """Run the app, streaming its response through; store it if the policy allows.

        ``flight``: the collapse key whose waiters are woken as soon as the response is stored
        (or known not to be).
        """
        plan: Plan | None = None
        chunks: list[bytes] = []
        size = 0
        failed = False  # the app answered 5xx and a stale-if-error copy replaces it
        started = False

        async def wrapped(message: Message) -> None:
            nonlocal plan, size, failed, started
            kind = message["type"]
            if kind == "http.response.start":
                if fallback is not None and is_error_status(message["status"]):
                    failed = True
                    return
                plan = self.policy.plan(
                    req, message["status"], message.get("headers", []), self.policy.now()
                )
                started = True
                if flight is not None and not plan.store:
                    self._wake(flight)
                await send({**message, "headers": plan.client_headers})
                return
            if failed:
                return
            if kind == "http.response.body" and plan is not None and plan.store:
                body = message.get("body", b"")
                size += len(body)
                if size > self.policy.max_body_size:
                    plan.store = False  # too big: keep streaming, stop copying
                    chunks.clear()
                    if flight is not None:
                        self._wake(flight)
                else:
                    chunks.append(body)
                    if not message.get("more_body", False):
                        if self.policy.complete(plan, size):
                            await self._store(req, plan, b"".join(chunks))
                        else:  # shorter than its Content-Length: an upstream broke off
                            plan.store = False
                        if flight is not None:
                            self._wake(flight)
            await send(message)

        with directives_in_effect(req.directives):
            try:
                await self.app(scope, receive, wrapped)
            except Exception:
                if fallback is None or started:
                    raise
                logger.warning(
                    "origin failed for %s; serving stale-if-error copy", req.url, exc_info=True
                )
                failed = True
        if failed and fallback is not None:
            event = self._flights.get(flight) if flight is not None else None
            if event is not None:
                event.failed = True  # the collapsed requests answer with their stale copies
            await self._answer(send, req, fallback.in_place_of_error())

    def _wake(self, flight: str) -> None:
        event = self._flights.get(flight)
        if event is not None:
            self._land(flight, event)

    async def _store(self, req: Request, plan: Plan, body: bytes) -> None:
        """Write the response's entries; a cache failure never fails the response."""
        items = dict(self.policy.build(req, plan, body, self.policy.now()))
        try:
            await self.cache.set_many(items, ttl=plan.ttl, tags=plan.tags, loaded=True)
        except Exception:
            logger.warning("could not store the response for %s", req.url, exc_info=True)

    def _refresh(self, scope: Scope, req: Request) -> None:
        """stale-while-revalidate: fetch a new copy in the background, once per URL at a time."""
        if req.url in self._refreshing:
            return
        self._refreshing.add(req.url)
        headers = [(n, v) for n, v in scope["headers"] if n.lower() not in _STRIPPED_ON_REFRESH]
        inner = {**scope, "method": "GET", "headers": headers}
        fresh_req = self.policy.request(
            "GET", req.url, req.path, request_headers(inner), self.policy.directives(req.path)
        )
        task = asyncio.get_running_loop().create_task(self._revalidate(inner, fresh_req))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _revalidate(self, scope: Scope, req: Request) -> None:
        done = asyncio.Event()
        sent_request = False

        async def receive() -> Message:
            nonlocal sent_request
            if not sent_request:
                sent_request = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                done.set()

        try:
            await self._origin(scope, receive, send, req, None)
        except Exception:
            logger.warning("background revalidation of %s failed", req.url, exc_info=True)
        finally:
            done.set()
            self._refreshing.discard(req.url)

    async def _unsafe(self, scope: Scope, receive: Receive, send: Send) -> None:
        """RFC 9111 §4.4: a successful POST/PUT/PATCH/DELETE invalidates the target URI."""
        status = 0

        async def wrapped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, wrapped)
        if invalidates(scope["method"], status):
            req = self._request(scope, "GET", Directives())
            if req.keyed:
                await self.purge(req.url)

    async def purge(self, url: str) -> None:
        """Drop every stored variant of a URL, under both schemes (see ``purge``)."""
        keys, tags = purge_targets(url, self.policy.key_prefix, self.policy.ignore)
        try:
            await self.cache.invalidate(keys=keys, tags=tags)
        except Exception:
            logger.warning("could not purge %s", url, exc_info=True)

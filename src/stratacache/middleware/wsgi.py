"""``WSGICacheMiddleware``: the same shared HTTP cache for WSGI apps (Flask, Django, any).

It uses the blocking ``cache.sync`` client and the same ``HttpCachePolicy`` as
the ASGI middleware. The app's iterable is passed through lazily, a copy kept
up to ``max_body_size``; the entry is written once the body is complete —
before the last chunk is handed to the server when ``Content-Length`` tells
which chunk is last, so a client holding the whole response finds it cached.

Concurrent misses of one URL variant run the app once per process; the other
threads wait (up to ``collapse_timeout``) for the stored response. Requests holding
a stale-if-error copy collapse too: when the app fails for the one that ran it, the
others answer with their stale copy without running it again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .parsing import invalidates, is_error_status, status_line
from .policy import HttpCachePolicy, Lookup, Plan, Request, Verdict
from .purge import purge_targets
from .rules import CacheRule, Directives, directives_in_effect
from .wsgi_bodies import Caching, Flight, Passthrough, Released, close_result

if TYPE_CHECKING:
    from ..core.fleet import SyncFleetLock
    from ..engine.cache import Cache

__all__ = ["WSGICacheMiddleware"]

Environ = dict[str, Any]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

logger = logging.getLogger("stratacache.middleware")
_STRIPPED_ON_REFRESH = ("HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_CACHE_CONTROL")


class EnvironHeaders(Mapping[str, str]):
    """Request headers of a WSGI environ by lower-case name, without copying them."""

    __slots__ = ("environ",)

    def __init__(self, environ: Environ) -> None:
        self.environ = environ

    @staticmethod
    def _var(name: str) -> str:
        upper = name.upper().replace("-", "_")
        return upper if upper in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + upper

    def __getitem__(self, name: str) -> str:
        value = self.environ.get(self._var(name))
        if value is None:
            raise KeyError(name)
        return str(value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._var(name) in self.environ

    def __iter__(self) -> Iterator[str]:
        for var in self.environ:
            if var.startswith("HTTP_"):
                yield var[5:].lower().replace("_", "-")
            elif var in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                yield var.lower().replace("_", "-")

    def __len__(self) -> int:
        return sum(1 for _ in self)


class _Response:
    """What the app said through ``start_response`` and ``write``."""

    __slots__ = ("headers", "status", "written")

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.written: list[bytes] = []


class WSGICacheMiddleware:
    """RFC 9111 shared cache for WSGI apps: ``app.wsgi_app = WSGICacheMiddleware(app.wsgi_app,
    cache=cache)``. Takes the same options as ``CacheMiddleware``."""

    def __init__(
        self,
        app: WSGIApp,
        cache: Cache,
        *,
        rules: Iterable[CacheRule] = (),
        refresh_workers: int = 2,
        **options: Any,
    ) -> None:
        self.app = app
        self.cache = cache
        self.policy = HttpCachePolicy(rules=rules, **options)
        self._refresh_workers = refresh_workers
        self._executor: ThreadPoolExecutor | None = None
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()
        self._flights: dict[str, Flight] = {}
        self._fleet = cache.sync.resolve_lock(True) if self.policy.collapse_fleet else None

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if method != "GET" and method != "HEAD":
            return self._unsafe(environ, start_response)
        directives = self.policy.directives(self._path(environ))
        if not directives.enabled:
            return self.app(environ, start_response)
        req = self._request(environ, method, directives)
        found, variant_key = self._lookup(req) if req.may_serve else (None, None)
        if self.policy.only_if_cached_miss(req, found):
            start_response(status_line(504), _str_headers(list(self.policy.GATEWAY_TIMEOUT)))
            return []
        served = found is not None and found.answers
        flight = None if served else self.policy.collapse_key(req, variant_key)
        if flight is not None:
            with self._lock:
                event = self._flights.get(flight)
                if event is None:
                    self._flights[flight] = event = Flight()
                    leader = True
                else:
                    leader = False
            if leader:
                try:
                    # A leader that took over from one that just landed finds its response.
                    found, _ = self._lookup(req)
                    if found is None and self._fleet is not None:
                        lead = (flight, event)
                        return self._fleet_lead(self._fleet, environ, start_response, req, lead)
                    if found is None or not found.answers:  # nothing, or a stale-if-error copy
                        return self._origin(environ, start_response, req, found, (flight, event))
                except BaseException:
                    self.land(flight, event)
                    raise
                self.land(flight, event)
                return self._serve(environ, start_response, req, found)
            if not event.wait(self.policy.collapse_timeout):
                logger.info("collapsed request for %s waited too long; asking the app", req.url)
            if event.failed and found is not None:  # the app just failed: do not ask it again
                return self._answer(start_response, req, found.in_place_of_error())
            found, _ = self._lookup(req)
        return self._serve(environ, start_response, req, found)

    def _serve(
        self, environ: Environ, start_response: StartResponse, req: Request, found: Lookup | None
    ) -> Iterable[bytes]:
        if found is None:
            return self._origin(environ, start_response, req, None)
        if found.verdict is Verdict.STALE_IF_ERROR:
            return self._origin(environ, start_response, req, found)
        if found.revalidate:
            self._refresh(environ, req)
        return self._answer(start_response, req, found)

    @staticmethod
    def _path(environ: Environ) -> str:
        raw = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        return str(raw).encode("latin-1").decode("utf-8", "replace") or "/"

    def _request(self, environ: Environ, method: str, directives: Directives) -> Request:
        headers = EnvironHeaders(environ)
        host = environ.get("HTTP_HOST") or f"{environ['SERVER_NAME']}:{environ['SERVER_PORT']}"
        path = self._path(environ)
        query = environ.get("QUERY_STRING", "")
        url = self.policy.url(environ.get("wsgi.url_scheme", "http"), host, path, query)
        return self.policy.request(method, url, path, headers, directives)

    def _fleet_lead(
        self,
        fleet: SyncFleetLock,
        environ: Environ,
        start_response: StartResponse,
        req: Request,
        flight: tuple[str, Flight],
    ) -> Iterable[bytes]:
        """Run the app under the fleet lock, or wait (bounded) for the process that holds it."""
        lock_key = self.cache.full_key(flight[0])
        deadline = time.monotonic() + self.policy.collapse_timeout
        while self.cache.lock_usable(fleet):  # its Redis known down: collapse here only
            try:
                attempt = fleet.acquire_sync(lock_key)
            except Exception:  # the lock is an optimisation: never fail the request for it
                logger.warning("fleet lock for %s unavailable", req.url, exc_info=True)
                break
            if attempt.owned:
                try:
                    found, _ = self._lookup(req)
                    if found is not None:
                        self.land(*flight)
                        return self._serve(environ, start_response, req, found)
                    # The lease is renewed while the app runs; the body is produced after we
                    # return, and releasing once it is consumed wakes the other processes.
                    with fleet.hold_sync(lock_key, attempt.token):
                        body = self._origin(environ, start_response, req, None, flight)
                        return Released(body, fleet, lock_key, attempt.token)
                except BaseException:
                    with contextlib.suppress(Exception):
                        fleet.release_sync(lock_key, attempt.token)
                    raise
            remaining = deadline - time.monotonic()
            if remaining > 0:
                with contextlib.suppress(Exception):
                    fleet.wait_sync(lock_key, attempt, remaining)
            found, _ = self._lookup(req)
            if found is not None:
                self.land(*flight)
                return self._serve(environ, start_response, req, found)
            if time.monotonic() >= deadline:
                break
        return self._origin(environ, start_response, req, None, flight)

    def land(self, flight: str, event: Flight) -> None:
        """Wake the requests collapsed on ``flight`` (idempotent)."""
        with self._lock:
            if self._flights.get(flight) is event:
                del self._flights[flight]
        event.set()

    def _lookup(self, req: Request) -> tuple[Lookup | None, str | None]:
        """Two-step Vary lookup: a usable stored response judged for this request (or None),
        and the variant key when the URL's Vary is known."""
        sync = self.cache.sync
        primary = sync.get(self.policy.primary_key(req.url))
        variant_key, value = self.policy.resolve_primary(req, primary)
        if variant_key is not None:
            variant = sync.get(variant_key)
            value = variant.get("r") if isinstance(variant, dict) else None
        return self.policy.lookup(req, value), variant_key

    def _answer(self, start_response: StartResponse, req: Request, found: Lookup) -> list[bytes]:
        """Answer from a stored response (or a 304 for a matching conditional request)."""
        stored = found.stored
        label = b"HIT" if found.verdict is Verdict.FRESH else b"STALE"
        if self.policy.not_modified(req.headers, stored):
            headers = self.policy.not_modified_headers(stored, found.age, label)
            start_response(status_line(304), _str_headers(headers))
            return []
        headers = self.policy.served_headers(stored, found.age, label)
        start_response(status_line(stored.status), _str_headers(headers))
        return [] if req.method == "HEAD" else [stored.body]

    def _origin(
        self,
        environ: Environ,
        start_response: StartResponse,
        req: Request,
        fallback: Lookup | None,
        flight: tuple[str, Flight] | None = None,
    ) -> Iterable[bytes]:
        """Run the app; pass its body through and store it if the policy allows.

        ``flight``: the collapse key and event whose waiters are woken once the response is
        stored, known not to be, or abandoned.
        """
        response = _Response()

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            response.status = int(status.split(" ", 1)[0])
            response.headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
            return response.written.append

        with directives_in_effect(req.directives):
            try:
                result = self.app(environ, capture)
                chunks = iter(result)
                first: list[bytes] = []
                if not response.status:  # generator apps call start_response on first iteration
                    first = [next(chunks, b"")]
            except Exception:
                if fallback is None:
                    raise
                logger.warning(
                    "origin failed for %s; serving stale-if-error copy", req.url, exc_info=True
                )
                return self._stale(start_response, req, fallback, flight)
        if fallback is not None and is_error_status(response.status):
            close_result(result)
            return self._stale(start_response, req, fallback, flight)
        plan = self.policy.plan(req, response.status, response.headers, self.policy.now())
        start_response(status_line(response.status), _str_headers(plan.client_headers))
        body = [*response.written, *first]
        if not plan.store:
            if flight is not None:
                self.land(*flight)
            return Passthrough(body, chunks, result)
        return Caching(self, req, plan, body, chunks, result, flight)

    def _stale(
        self,
        start_response: StartResponse,
        req: Request,
        found: Lookup,
        flight: tuple[str, Flight] | None = None,
    ) -> list[bytes]:
        """Answer with ``found`` in place of the app's error; the collapsed requests too."""
        if flight is not None:
            flight[1].failed = True
            self.land(*flight)
        return self._answer(start_response, req, found.in_place_of_error())

    def store(self, req: Request, plan: Plan, body: bytes) -> None:
        """Write the response's entries; a cache failure never fails the response."""
        items = dict(self.policy.build(req, plan, body, self.policy.now()))
        try:
            self.cache.sync.set_many(items, ttl=plan.ttl, tags=plan.tags, loaded=True)
        except Exception:
            logger.warning("could not store the response for %s", req.url, exc_info=True)

    def _refresh(self, environ: Environ, req: Request) -> None:
        """stale-while-revalidate: fetch a new copy in a worker thread, once per URL at a time."""
        with self._lock:
            if req.url in self._refreshing:
                return
            self._refreshing.add(req.url)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self._refresh_workers, thread_name_prefix="stratacache-refresh"
                )
        inner = {k: v for k, v in environ.items() if k not in _STRIPPED_ON_REFRESH}
        inner["REQUEST_METHOD"] = "GET"
        self._executor.submit(self._revalidate, inner, req.url)

    def _revalidate(self, environ: Environ, url: str) -> None:
        try:
            path = self._path(environ)
            req = self._request(environ, "GET", self.policy.directives(path))
            body = self._origin(environ, lambda *a: lambda b: None, req, None)
            try:
                for _ in body:
                    pass
            finally:
                close_result(body)
        except Exception:
            logger.warning("background revalidation of %s failed", url, exc_info=True)
        finally:
            with self._lock:
                self._refreshing.discard(url)

    def _unsafe(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """RFC 9111 §4.4: a successful POST/PUT/PATCH/DELETE invalidates the target URI."""

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if invalidates(environ["REQUEST_METHOD"], int(status.split(" ", 1)[0])):
                req = self._request(environ, "GET", Directives())
                if req.keyed:
                    self.purge(req.url)
            return start_response(status, headers, exc_info)

        return self.app(environ, capture)

    def purge(self, url: str) -> None:
        """Drop every stored variant of a URL, under both schemes (see ``purge``)."""
        keys, tags = purge_targets(url, self.policy.key_prefix, self.policy.ignore)
        try:
            self.cache.sync.invalidate(keys=keys, tags=tags)
        except Exception:
            logger.warning("could not purge %s", url, exc_info=True)

    def close(self) -> None:
        """Stop the background refresh workers."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def _str_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]

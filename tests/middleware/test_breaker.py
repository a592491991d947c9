"""A hung Redis whose circuit breaker is open costs an HTTP miss nothing.

Once the Redis tier's circuit is open, the middleware's miss path asks that Redis
nothing: the lookup skips it (as always), the response is stored in memory only
(``set_many(loaded=True)``: as a decorated function's load), and ``collapse="fleet"``
collapses in the process instead of asking the fleet lock. No call waits on the hung
server, so the tier's error count does not move. ASGI and WSGI alike.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from tests.outage import LockSpy, breaker_cache, hang, resume
from tests.waiting import wait_until

import stratacache as sc
from stratacache.middleware import CacheMiddleware, WSGICacheMiddleware

HEADERS = [(b"cache-control", b"max-age=60"), (b"content-type", b"text/plain")]


@pytest.fixture
def server(pausable_redis: Any) -> Any:
    return pausable_redis


def _cache(url: str) -> sc.Cache:
    return breaker_cache(url, "mb")


def _redis(cache: sc.Cache) -> dict[str, Any]:
    return cache.stats()["tiers"]["redis"]  # type: ignore[no-any-return]


def _closed(cache: sc.Cache) -> bool:
    return not _redis(cache)["circuit_open"]


class Asgi:
    """``CacheMiddleware`` called directly, over an app that counts its requests."""

    def __init__(self, cache: sc.Cache, collapse: object) -> None:
        self.origin: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            self.origin.append(scope["path"])
            await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
            await send({"type": "http.response.body", "body": b"page " + scope["path"].encode()})

        self.mw = CacheMiddleware(app, cache=cache, collapse=collapse)

    async def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        scope = {
            "type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
            "query_string": b"", "headers": [(b"host", b"shop")], "scheme": "http",
            "server": ("shop", 80), "http_version": "1.1", "root_path": "",
        }  # fmt: skip
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        await self.mw(scope, receive, send)
        headers = {k.decode(): v.decode() for k, v in sent[0].get("headers", [])}
        return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


class Wsgi:
    """``WSGICacheMiddleware`` called directly, over an app that counts its requests."""

    def __init__(self, cache: sc.Cache, collapse: object) -> None:
        self.origin: list[str] = []

        def app(environ: Any, start_response: Any) -> list[bytes]:
            self.origin.append(environ["PATH_INFO"])
            start_response("200 OK", [(k.decode(), v.decode()) for k, v in HEADERS])
            return [b"page " + environ["PATH_INFO"].encode()]

        self.mw = WSGICacheMiddleware(app, cache=cache, collapse=collapse)

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        environ = {
            "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "",
            "SERVER_NAME": "shop", "SERVER_PORT": "80", "HTTP_HOST": "shop",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(b""),
        }  # fmt: skip
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], *_: Any) -> Any:
            started.append((int(status.split()[0]), {k.lower(): v for k, v in headers}))

        result = self.mw(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return started[0][0], started[0][1], body


@pytest.mark.slow
@pytest.mark.parametrize("collapse", [True, "fleet"])
async def test_asgi_misses_skip_a_redis_whose_breaker_is_open(
    server: Any, collapse: object
) -> None:
    cache = _cache(server.url)
    async with cache:
        front = Asgi(cache, collapse)
        spy = LockSpy(cache.lock)
        assert (await front.get("/before"))[0] == 200
        stored = _redis(cache)["sets"]
        assert stored > 0  # Redis answers: the response is stored there
        hang(server)
        try:
            assert await cache.get("anything") is None  # times out: the circuit opens
            assert _redis(cache)["circuit_open"]
            spy.calls.clear()
            errors, skipped = _redis(cache)["errors"], _redis(cache)["skipped"]
            for path in ("/a", "/b", "/a", "/b"):
                status, headers, body = await front.get(path)
                assert (status, body) == (200, b"page " + path.encode())
            assert front.origin == ["/before", "/a", "/b"]  # the repeats are memory hits
            assert headers["x-cache"] == "HIT"
            assert _redis(cache)["errors"] == errors  # no call waited on the hung Redis
            assert _redis(cache)["sets"] == stored  # stored in memory only
            assert _redis(cache)["skipped"] > skipped  # the breaker was consulted
            assert spy.calls == []  # the fleet lock neither asked nor connected
        finally:
            resume(server)
        wait_until(lambda: _closed(cache), what="the probe to close the circuit")
        assert (await front.get("/after"))[0] == 200
        assert _redis(cache)["sets"] > stored  # Redis in use again
        if collapse == "fleet":
            assert "acquire" in spy.calls


@pytest.mark.slow
@pytest.mark.parametrize("collapse", [True, "fleet"])
def test_wsgi_misses_skip_a_redis_whose_breaker_is_open(server: Any, collapse: object) -> None:
    cache = _cache(server.url)
    with cache.sync:
        front = Wsgi(cache, collapse)
        spy = LockSpy(cache.lock)
        assert front.get("/before")[0] == 200
        stored = _redis(cache)["sets"]
        assert stored > 0
        hang(server)
        try:
            assert cache.sync.get("anything") is None  # times out: the circuit opens
            assert _redis(cache)["circuit_open"]
            spy.calls.clear()
            errors, skipped = _redis(cache)["errors"], _redis(cache)["skipped"]
            for path in ("/a", "/b", "/a", "/b"):
                status, headers, body = front.get(path)
                assert (status, body) == (200, b"page " + path.encode())
            assert front.origin == ["/before", "/a", "/b"]
            assert headers["x-cache"] == "HIT"
            assert _redis(cache)["errors"] == errors
            assert _redis(cache)["sets"] == stored
            assert _redis(cache)["skipped"] > skipped
            assert spy.calls == []
        finally:
            resume(server)
        wait_until(lambda: _closed(cache), what="the probe to close the circuit")
        assert front.get("/after")[0] == 200
        assert _redis(cache)["sets"] > stored
        if collapse == "fleet":
            assert "acquire_sync" in spy.calls


async def test_a_loaded_write_passes_over_an_open_circuit_a_plain_write_does_not(
    redis_url: str,
) -> None:
    """``set_many(loaded=True)`` consults the breaker of a shared tier; ``set_many`` does not
    (an explicit overwrite must reach it, or its older value would come back)."""
    cache = _cache(redis_url)
    async with cache:
        slot = next(s for s in cache.tiers.slots if s.name == "redis")
        slot.breaker.probe = None  # no prober: the circuit stays open for this test
        slot.breaker.failure()
        assert slot.breaker.is_open
        sets = _redis(cache)["sets"]
        await cache.set_many({"a": 1}, loaded=True)
        assert _redis(cache)["sets"] == sets
        assert await cache.get("a") == 1  # in memory
        cache.sync.set_many({"b": 2}, loaded=True)
        assert _redis(cache)["sets"] == sets
        await cache.set_many({"c": 3})
        assert _redis(cache)["sets"] == sets + 1

"""Request collapsing: concurrent misses of one URL run the app once (uvicorn and waitress)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from tests.servers import uvicorn_server, waitress_server
from tests.waiting import wait_until

import stratacache as sc
from stratacache.core.clock import ManualClock
from stratacache.middleware import CacheMiddleware, WSGICacheMiddleware

N = 16
HOLD = 10.0  # seconds the view waits at most for the other requests to arrive


@dataclass
class Calls:
    """What the test app saw: requests entering the middleware, and view runs per path."""

    entered: int = 0
    views: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    #: views wait for N views of their path (not N requests entering): nothing is stored
    #: before every request has missed
    in_view: bool = False

    def enter(self) -> None:
        with self.lock:
            self.entered += 1
            if self.entered >= N and not self.in_view:
                self.arrived.set()

    def view(self, path: str) -> int:
        with self.lock:
            self.views[path] = self.views.get(path, 0) + 1
            if self.views[path] >= N and self.in_view:
                self.arrived.set()
            return self.views[path]


def _cache_control(path: str) -> bytes:
    if path.startswith("/flaky"):
        return b"max-age=10, stale-if-error=300"
    return b"no-store" if path.startswith("/private") else b"max-age=60"


def _status(path: str, run: int) -> int:
    """``/flaky`` pages work once, then fail (500) for every later run."""
    return 500 if path.startswith("/flaky") and run > 1 else 200


def _memory_cache() -> sc.Cache:
    return sc.Cache(tiers=[sc.MemoryTier(maxsize=1000)], namespace="collapse")


def _asgi(calls: Calls, cache: sc.Cache | None = None, **options: Any) -> Any:
    """A raw ASGI view behind ``CacheMiddleware``, wrapped in a counter of arriving requests."""

    async def view(scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        run = calls.view(path)
        if path.startswith("/slow") and run == 1:
            await asyncio.get_running_loop().run_in_executor(None, calls.release.wait, HOLD)
        elif not path.startswith("/slow") and not (path.startswith("/flaky") and run == 1):
            await asyncio.get_running_loop().run_in_executor(None, calls.arrived.wait, HOLD)
        headers = [(b"cache-control", _cache_control(path)), (b"content-type", b"text/plain")]
        status = _status(path, run)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": f"{path} run {run}".encode()})

    inner = CacheMiddleware(view, cache=cache or _memory_cache(), **options)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.enter()
        await inner(scope, receive, send)

    return app


def _wsgi(calls: Calls, cache: sc.Cache | None = None, **options: Any) -> tuple[Any, sc.Cache]:
    """A WSGI view behind ``WSGICacheMiddleware``, wrapped in a counter of arriving requests."""

    def view(environ: Any, start_response: Any) -> list[bytes]:
        path = environ["PATH_INFO"]
        run = calls.view(path)
        if path.startswith("/slow"):
            if run == 1:
                calls.release.wait(HOLD)
        elif not (path.startswith("/flaky") and run == 1):
            calls.arrived.wait(HOLD)
        headers = [("Cache-Control", _cache_control(path).decode()), ("Content-Type", "text/plain")]
        status = _status(path, run)
        start_response(f"{status} {'OK' if status == 200 else 'Internal Server Error'}", headers)
        return [f"{path} run {run}".encode()]

    cache = cache or _memory_cache()
    inner = WSGICacheMiddleware(view, cache=cache, **options)

    def app(environ: Any, start_response: Any) -> Any:
        calls.enter()
        return inner(environ, start_response)

    return app, cache


Serve = Callable[..., Iterator[tuple[str, Calls]]]


@pytest.fixture(params=["asgi", "wsgi"])
def serve(request: pytest.FixtureRequest) -> Iterator[Serve]:
    """Starts the test app under uvicorn (ASGI) or waitress (WSGI) with middleware options."""
    with contextlib.ExitStack() as stack:

        def start(calls: Calls | None = None, **options: Any) -> tuple[str, Calls]:
            calls = calls or Calls()
            if request.param == "asgi":
                app = _asgi(calls, **options)
                base, _ = stack.enter_context(uvicorn_server(app, lifespan="off"))
            else:
                app, cache = _wsgi(calls, **options)
                stack.callback(cache.sync.close)  # after the server has stopped
                base = stack.enter_context(waitress_server(app, threads=N + 4))
            return base, calls

        yield start  # type: ignore[misc]


def _burst(url: str, n: int = N) -> list[httpx.Response]:
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda _: client.get(url), range(n)))


def test_concurrent_misses_of_one_page_run_the_view_once(serve: Serve) -> None:
    """16 simultaneous requests of an uncached page: one view run, 16 identical answers."""
    base, calls = serve()
    responses = _burst(base + "/page/a")
    assert calls.views == {"/page/a": 1}
    assert [r.status_code for r in responses] == [200] * N
    assert {r.text for r in responses} == {"/page/a run 1"}
    assert sorted(r.headers["x-cache"] for r in responses) == ["HIT"] * (N - 1) + ["MISS"]


def test_failing_page_with_a_stale_copy_runs_the_view_once(serve: Serve) -> None:
    """16 simultaneous requests of a stale page whose view now fails: one view run, and
    every request gets the stale-if-error copy (as nginx's proxy_cache_lock with
    proxy_cache_use_stale does)."""
    clock = ManualClock(start=time.time())
    base, calls = serve(clock=clock)
    with httpx.Client(timeout=30) as client:
        assert client.get(base + "/flaky/a").status_code == 200
    with calls.lock:
        calls.entered = 0  # the burst below is what the view waits for
    clock.advance(20)  # past max-age, within stale-if-error
    responses = _burst(base + "/flaky/a")
    assert calls.views == {"/flaky/a": 2}
    assert [r.status_code for r in responses] == [200] * N
    assert {r.text for r in responses} == {"/flaky/a run 1"}
    assert {r.headers["x-cache"] for r in responses} == {"STALE"}


def test_uncacheable_response_releases_the_waiters_at_once(serve: Serve) -> None:
    """A no-store answer wakes the collapsed requests, which then each ask the app."""
    base, calls = serve(collapse_timeout=60)
    started = time.monotonic()
    responses = _burst(base + "/private/a")
    assert time.monotonic() - started < 30  # woken by the leader, not by the 60 s bound
    assert calls.views == {"/private/a": N}
    assert all(r.status_code == 200 for r in responses)


def test_waiters_go_to_the_app_after_the_collapse_timeout(serve: Serve) -> None:
    """While the leader hangs, the others give up after collapse_timeout and are answered."""
    base, calls = serve(collapse_timeout=0.2)
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(1) as pool:
        leader = pool.submit(client.get, base + "/slow/a")
        wait_until(lambda: calls.views.get("/slow/a") == 1, what="the leader to reach the view")
        follower = client.get(base + "/slow/a")
        assert follower.status_code == 200 and follower.text == "/slow/a run 2"
        calls.release.set()
        assert leader.result().text == "/slow/a run 1"


def test_collapsing_can_be_turned_off(serve: Serve) -> None:
    """With collapse=False every concurrent miss runs the view."""
    base, calls = serve(Calls(in_view=True), collapse=False)
    _burst(base + "/page/b")
    assert calls.views == {"/page/b": N}


def test_requests_that_refuse_the_cache_do_not_wait(serve: Serve) -> None:
    """A no-cache request is not collapsed: it reaches the app while a leader is running."""
    base, calls = serve(collapse_timeout=60)
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(1) as pool:
        leader = pool.submit(client.get, base + "/slow/c")
        wait_until(lambda: calls.views.get("/slow/c") == 1, what="the leader to reach the view")
        started = time.monotonic()
        bypass = client.get(base + "/slow/c", headers={"cache-control": "no-cache"})
        assert bypass.text == "/slow/c run 2" and time.monotonic() - started < 30
        calls.release.set()
        assert leader.result().status_code == 200


@pytest.mark.parametrize(
    "options",
    [{"collapse": "yes"}, {"collapse": 1}, {"collapse_timeout": -1}, {"collapse_timeout": "x"}],
)
def test_bad_collapse_options_are_config_errors(options: dict[str, Any]) -> None:
    """A collapse option of the wrong type or range is refused where the middleware is built."""
    cache = sc.Cache(tiers=[sc.MemoryTier()], namespace="collapse")
    with pytest.raises(sc.ConfigError):
        CacheMiddleware(lambda *a: None, cache=cache, **options)  # type: ignore[arg-type]
    with pytest.raises(sc.ConfigError):
        WSGICacheMiddleware(lambda *a: [], cache=cache, **options)


def test_fleet_collapsing_runs_the_view_once_across_processes(
    serve: Serve, redis_server: str
) -> None:
    """collapse='fleet': 16 requests spread over two app instances run the view once."""
    namespace = f"fleet{uuid.uuid4().hex[:8]}"

    def cache() -> sc.Cache:
        return sc.Cache(
            tiers=[sc.MemoryTier(maxsize=1000), sc.RedisTier(url=redis_server)],
            namespace=namespace,
            lock=sc.RedisLock(url=redis_server),
        )

    calls = Calls()
    first, _ = serve(calls, cache=cache(), collapse="fleet", collapse_timeout=20)
    second, _ = serve(calls, cache=cache(), collapse="fleet", collapse_timeout=20)
    urls = [(first if i % 2 else second) + "/page/fleet" for i in range(N)]
    # behind one load balancer: the same Host, whichever instance answers
    client = httpx.Client(timeout=30, headers={"host": "shop.example"})
    with client, ThreadPoolExecutor(N) as pool:
        responses = list(pool.map(client.get, urls))
    assert calls.views == {"/page/fleet": 1}
    assert {r.text for r in responses} == {"/page/fleet run 1"}


def test_fleet_collapsing_needs_a_fleet_lock() -> None:
    """collapse='fleet' on a cache without a fleet lock is a ConfigError at construction."""
    with pytest.raises(sc.ConfigError):
        CacheMiddleware(lambda *a: None, cache=_memory_cache(), collapse="fleet")  # type: ignore[arg-type]
    with pytest.raises(sc.ConfigError):
        WSGICacheMiddleware(lambda *a: [], cache=_memory_cache(), collapse="fleet")

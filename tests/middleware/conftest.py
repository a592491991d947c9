"""Real servers on loopback for the middleware tests: uvicorn (FastAPI) and waitress (Flask).

Each server runs in a background thread of the test process, on a port the
OS picked, with a cache of a memory tier over the session's redis-server
under a namespace of its own. The middleware's clock is a ``ManualClock``
the tests move through ``POST /_clock`` — ages and staleness without sleeping.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.waiting import wait_until

import stratacache as sc

from .apps import build_asgi, build_wsgi


@dataclass
class Server:
    """A running app: ``get``/``head``/``post`` by path, and the test controls."""

    kind: str
    base: str
    client: httpx.Client

    def get(self, path: str, **headers: str) -> httpx.Response:
        return self.client.get(self.base + path, headers=_headers(headers))

    def head(self, path: str, **headers: str) -> httpx.Response:
        return self.client.head(self.base + path, headers=_headers(headers))

    def post(self, path: str) -> httpx.Response:
        return self.client.post(self.base + path)

    def advance(self, seconds: float) -> None:
        """Move the middleware's clock forward."""
        self.client.post(f"{self.base}/_clock", params={"advance": seconds}).raise_for_status()

    def purge(self, path: str) -> None:
        """Purge a URL through ``purge_url`` in the server."""
        self.client.post(f"{self.base}/_purge", params={"url": self.base + path}).raise_for_status()

    def invalidate(self, tag: str) -> None:
        """``cache.invalidate(tags=[tag])`` in the server."""
        self.client.post(f"{self.base}/_invalidate", params={"tag": tag}).raise_for_status()


def _headers(headers: dict[str, str]) -> dict[str, str]:
    return {name.replace("_", "-"): value for name, value in headers.items()}


def _serve_uvicorn(app: Any) -> Iterator[str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _serve_waitress(app: Any, cache: sc.Cache) -> Iterator[str]:
    from waitress import wasyncore
    from waitress.server import create_server

    server: Any = create_server(app, host="127.0.0.1", port=0, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        # close() stops listening only; kept-alive channels would keep the loop running
        server.close()
        wasyncore.close_all(server._map)
        server.task_dispatcher.shutdown()
        thread.join(timeout=10)
        cache.sync.close()


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def server(request: pytest.FixtureRequest, redis_server: str) -> Iterator[Server]:
    """The test app behind the ASGI (uvicorn) or WSGI (waitress) middleware."""
    namespace = f"mw{uuid.uuid4().hex[:10]}"
    cache = sc.Cache(
        tiers=[sc.MemoryTier(maxsize=10_000), sc.RedisTier(url=redis_server)],
        namespace=namespace,
    )
    clock = sc.ManualClock(time.time())
    if request.param == "asgi":
        serving = _serve_uvicorn(build_asgi(cache, clock))
    else:
        serving = _serve_waitress(build_wsgi(cache, clock), cache)
    with httpx.Client(timeout=10) as client:
        base = next(serving)
        try:
            yield Server(request.param, base, client)
        finally:
            next(serving, None)

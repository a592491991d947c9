"""Real servers on loopback for the middleware tests: uvicorn (FastAPI) and waitress (Flask).

Each server runs in a background thread of the test process, on a port the
OS picked, with a cache of a memory tier over the session's redis-server
under a namespace of its own. The middleware's clock is a ``ManualClock``
the tests move through ``POST /_clock`` — ages and staleness without sleeping.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from tests.servers import uvicorn_server, waitress_server

import stratacache as sc

from .apps import build_asgi, build_wsgi


@dataclass
class Server:
    """A running app: ``get``/``head``/``post`` by path, and the test controls."""

    kind: str
    base: str
    client: httpx.Client

    def get(self, path: str, **headers: str) -> httpx.Response:
        self.client.cookies.clear()  # a cookie set by one test must not follow the next ones
        return self.client.get(self.base + path, headers=_headers(headers))

    def head(self, path: str, **headers: str) -> httpx.Response:
        self.client.cookies.clear()
        return self.client.head(self.base + path, headers=_headers(headers))

    def post(self, path: str) -> httpx.Response:
        return self.client.post(self.base + path)

    def advance(self, seconds: float) -> None:
        """Move the middleware's clock forward."""
        self.client.post(f"{self.base}/_clock", params={"advance": seconds}).raise_for_status()

    def purge(self, path: str, scheme: str = "http") -> None:
        """Purge a URL through ``purge_url`` in the server (as ``scheme`` names it)."""
        url = scheme + self.base.removeprefix("http") + path
        self.client.post(f"{self.base}/_purge", params={"url": url}).raise_for_status()

    def invalidate(self, tag: str) -> None:
        """``cache.invalidate(tags=[tag])`` in the server."""
        self.client.post(f"{self.base}/_invalidate", params={"tag": tag}).raise_for_status()


def _headers(headers: dict[str, str]) -> dict[str, str]:
    return {name.replace("_", "-"): value for name, value in headers.items()}


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def server(request: pytest.FixtureRequest, redis_server: str) -> Iterator[Server]:
    """The test app behind the ASGI (uvicorn) or WSGI (waitress) middleware."""
    namespace = f"mw{uuid.uuid4().hex[:10]}"
    cache = sc.Cache(
        tiers=[sc.MemoryTier(maxsize=10_000), sc.RedisTier(url=redis_server)],
        namespace=namespace,
    )
    clock = sc.ManualClock(time.time())
    with contextlib.ExitStack() as stack, httpx.Client(timeout=10) as client:
        if request.param == "asgi":
            base, _ = stack.enter_context(uvicorn_server(build_asgi(cache, clock)))
        else:
            stack.callback(cache.sync.close)  # after the server has stopped
            base = stack.enter_context(waitress_server(build_wsgi(cache, clock), threads=8))
        yield Server(request.param, base, client)

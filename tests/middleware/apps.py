"""The apps the middleware tests run behind real servers: one FastAPI (ASGI), one Flask (WSGI).

Both serve the same routes so every test runs against both middlewares:

- ``/{prefix}/{name}`` echoes a response shaped by query parameters: ``cc`` (Cache-Control),
  ``vary``, ``etag``, ``lm`` (Last-Modified, seconds before now), ``cookie``, ``status``,
  ``tags`` (tags header), ``size`` (body bytes), ``stream`` (number of chunks), ``fail``
  (``raise`` or ``500`` from the second call on). The body names the call number and the
  request's Accept-Language, so a test tells an origin answer from a cached one.
- ``/products/{product_id}`` is decorated with ``cache_response(ttl=60, tags=[...])``.
- ``POST /_clock?advance=N``, ``POST /_purge?url=U``, ``POST /_invalidate?tag=T`` drive the
  middleware's clock and the cache from the test.
"""

from __future__ import annotations

import email.utils
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import flask
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

import stratacache as sc
from stratacache.middleware import (
    CacheMiddleware,
    CacheRule,
    WSGICacheMiddleware,
    cache_response,
    purge_url,
    purge_url_sync,
)

MAX_BODY = 64 * 1024
RULES = [
    CacheRule("/ruled/{name}", ttl=60, tags=["ruled:{name}"]),
    CacheRule("/off/*", enabled=False),
    CacheRule("/lang/{name}", ttl=60, vary=["accept-language"]),
    CacheRule("/shared/{name}", ttl=60, public=True),
    CacheRule("/bylang/{name}", ttl=60, vary_on_cookies=["lang"]),
]
#: cookies no page of the test apps depends on
IGNORED_COOKIES = ["_ga*", "consent"]


class Origin:
    """The handler logic both frameworks share, with a call counter per URL."""

    def __init__(self, clock: sc.ManualClock) -> None:
        self.clock = clock
        self.calls: Counter[str] = Counter()

    def respond(
        self, url: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> tuple[int, list[tuple[str, str]], list[bytes]]:
        """Status, headers and body chunks for one call of the echo route."""
        self.calls[url] += 1
        n = self.calls[url]
        if n > 1 and query.get("fail") == "raise":
            raise RuntimeError("origin down")
        status = 500 if n > 1 and query.get("fail") == "500" else int(query.get("status", 200))
        out: list[tuple[str, str]] = [("content-type", "text/plain")]
        for param, header in (
            ("cc", "cache-control"),
            ("vary", "vary"),
            ("etag", "etag"),
            ("cl", "content-length"),  # a declared length the body may not match
        ):
            if param in query:
                out.append((header, query[param]))
        if "lm" in query:
            when = self.clock.time() - float(query["lm"])
            out.append(("last-modified", email.utils.formatdate(when, usegmt=True)))
        if "cookie" in query:
            out.append(("set-cookie", f"session={query['cookie']}"))
        if "tags" in query:
            out.append(("x-cache-tags", query["tags"]))
        body = f"call {n} lang={headers.get('accept-language', '-')}".encode()
        if "size" in query:
            body = (body + b" ") * (int(query["size"]) // (len(body) + 1) + 1)
            body = body[: int(query["size"])]
        chunks = int(query.get("stream", 1))
        step = max(1, len(body) // chunks + 1)
        return status, out, [body[i : i + step] for i in range(0, len(body), step)] or [b""]


def build_asgi(cache: sc.Cache, clock: sc.ManualClock) -> Any:
    """A FastAPI app behind ``CacheMiddleware``."""
    origin = Origin(clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with cache:
            yield

    app = FastAPI(lifespan=lifespan)
    app.add_middleware(
        CacheMiddleware,
        cache=cache,
        clock=clock,
        rules=RULES,
        max_body_size=MAX_BODY,
        ignore_cookies=IGNORED_COOKIES,
    )

    @app.post("/_clock")
    async def advance(advance: float) -> dict[str, float]:
        clock.advance(advance)
        return {"now": clock.time()}

    @app.post("/_purge")
    async def purge(url: str) -> dict[str, str]:
        await purge_url(cache, url)
        return {"purged": url}

    @app.post("/_invalidate")
    async def invalidate(tag: str) -> dict[str, str]:
        await cache.invalidate(tags=[tag])
        return {"invalidated": tag}

    @app.get("/products/{product_id}")
    @cache_response(ttl=60, tags=["product:{product_id}"])
    async def product(product_id: int) -> PlainTextResponse:
        origin.calls[f"product{product_id}"] += 1
        return PlainTextResponse(
            f"product {product_id} call {origin.calls[f'product{product_id}']}"
        )

    @app.get("/personal/{name}")
    @cache_response(enabled=False)
    async def personal(name: str) -> PlainTextResponse:
        origin.calls[f"personal{name}"] += 1
        body = f"personal call {origin.calls[f'personal{name}']}"
        return PlainTextResponse(body, headers={"cache-control": "max-age=60"})

    @app.api_route("/{prefix}/{name}", methods=["GET", "HEAD", "POST"])
    async def echo(request: Request) -> Response:
        status, headers, chunks = origin.respond(
            str(request.url), dict(request.query_params), dict(request.headers)
        )
        if len(chunks) > 1 or "stream" in request.query_params:

            async def body() -> AsyncIterator[bytes]:
                for chunk in chunks:
                    yield chunk

            return StreamingResponse(body(), status_code=status, headers=dict(headers))
        return Response(b"".join(chunks), status_code=status, headers=dict(headers))

    return app


def build_wsgi(cache: sc.Cache, clock: sc.ManualClock) -> Any:
    """A Flask app behind ``WSGICacheMiddleware``."""
    origin = Origin(clock)
    request = flask.request
    app = flask.Flask(__name__)
    app.wsgi_app = WSGICacheMiddleware(  # type: ignore[method-assign]
        app.wsgi_app,
        cache=cache,
        clock=clock,
        rules=RULES,
        max_body_size=MAX_BODY,
        ignore_cookies=IGNORED_COOKIES,
    )

    @app.post("/_clock")
    def advance() -> dict[str, float]:
        clock.advance(float(request.args["advance"]))
        return {"now": clock.time()}

    @app.post("/_purge")
    def purge() -> dict[str, str]:
        purge_url_sync(cache, request.args["url"])
        return {"purged": request.args["url"]}

    @app.post("/_invalidate")
    def invalidate() -> dict[str, str]:
        cache.sync.invalidate(tags=[request.args["tag"]])
        return {"invalidated": request.args["tag"]}

    @app.get("/products/<int:product_id>")
    @cache_response(ttl=60, tags=["product:{product_id}"])
    def product(product_id: int) -> str:
        origin.calls[f"product{product_id}"] += 1
        return f"product {product_id} call {origin.calls[f'product{product_id}']}"

    @app.get("/personal/<name>")
    @cache_response(enabled=False)
    def personal(name: str) -> tuple[str, int, dict[str, str]]:
        origin.calls[f"personal{name}"] += 1
        body = f"personal call {origin.calls[f'personal{name}']}"
        return body, 200, {"cache-control": "max-age=60"}

    @app.route("/<prefix>/<name>", methods=["GET", "HEAD", "POST"])
    def echo(prefix: str, name: str) -> flask.Response:
        status, headers, chunks = origin.respond(
            request.url, request.args.to_dict(), {k.lower(): v for k, v in request.headers}
        )
        if len(chunks) > 1 or "stream" in request.args:

            def body() -> Iterator[bytes]:
                yield from chunks

            return flask.Response(body(), status=status, headers=headers)
        return flask.Response(b"".join(chunks), status=status, headers=headers)

    return app


_names = itertools.count()


def unique(prefix: str = "r") -> str:
    """A path no other test uses, so tests share servers without sharing entries."""
    return f"/{prefix}/t{next(_names)}"

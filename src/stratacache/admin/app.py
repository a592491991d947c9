"""``AdminAPI``: a cache's operator surface over HTTP, as a Starlette ASGI app.

Routes (see ``/openapi.json`` for the full document)::

    GET    /                    the dashboard (HTML)              open
    GET    /health              liveness                          open
    GET    /openapi.json        the OpenAPI 3.1 document          open
    GET    /stats               counters, breakers, bus, hot keys read
    GET    /metrics             Prometheus text                   read
    GET    /keys                ?prefix=&limit=&cursor=&tier=     read
    GET    /entries/{key}       per-tier TTL, tags, size, age     read (admin with ?value=1)
    DELETE /entries/{key}       remove a key everywhere           admin
    POST   /invalidate          {"keys", "tags", "prefix", "reason"}  admin
    GET    /warmers             registered warmer names           read
    POST   /warm                {"warmers", "from_hot", "concurrency"}  admin
    POST   /flush               {"confirm": true, "reason"}       admin
    POST   /sql/invalidate-tables {"tables", "reason"}            admin (with table_invalidator=)

Serve it on its own (``uvicorn.run(AdminAPI(cache, token=...))``) or mount it
under any path of a Starlette/FastAPI app (``app.mount("/admin/cache", api)``):
every route and the OpenAPI ``servers`` entry follow the mount's ``root_path``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from importlib.resources import files
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator
from starlette.types import Receive, Scope, Send

from ..engine.cache import Cache
from ..metrics import exposition, instrument
from .audit import AdminAction, log_action
from .auth import Guard
from .models import component_schemas
from .problems import Problem, problem_response
from .routes import Handlers

log = logging.getLogger("stratacache.admin")
#: default request body limit in bytes
MAX_BODY = 64 * 1024
AuditHook = Callable[[AdminAction], None]


class AdminAPI:
    """The admin API of one cache (an ASGI app).

    Args:
        cache: the cache to expose.
        token: bearer token of the admin scope (every route).
        read_token: bearer token of the read scope (stats, metrics, keys, entries
            without values, warmer names).
        allow_anonymous: answer requests without a token, with the admin scope,
            from loopback clients only (everyone else gets 403).
        audit: callables receiving an ``AdminAction`` for every mutating call,
            successful or not (the cache's own audit hooks also get every
            invalidation, with the caller as ``actor``). Default: log at INFO on
            the ``stratacache.admin`` logger.
        max_body: largest request body accepted, in bytes (413 beyond).
        registry: Prometheus registry served on ``/metrics`` (default: a private one
            exporting ``cache``; in multi-process mode, every worker's metrics).
        title: title of the OpenAPI document and the dashboard.
        table_invalidator: adds ``POST /sql/invalidate-tables`` (admin scope), which
            calls it with the list of table names (sync or async), e.g. a SQL query
            cache's ``invalidate_tables``.

    Raises:
        ConfigError: no token and not ``allow_anonymous``; a token shorter than 16
            characters; the same token for both scopes.
    """

    def __init__(
        self,
        cache: Cache,
        *,
        token: str | None = None,
        read_token: str | None = None,
        allow_anonymous: bool = False,
        audit: Iterable[AuditHook] | None = None,
        max_body: int = MAX_BODY,
        registry: CollectorRegistry | None = None,
        title: str = "stratacache admin",
        table_invalidator: Callable[[list[str]], Any] | None = None,
    ) -> None:
        self.cache = cache
        self.guard = Guard(token, read_token, allow_anonymous)
        self.audit_hooks: list[AuditHook] = list(audit) if audit is not None else [log_action]
        self.max_body = max_body
        self.title = title
        self.table_invalidator = table_invalidator
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
            instrument(cache, registry=registry)
        self.registry = registry
        self.dashboard_html = (
            files(__package__)
            .joinpath("dashboard.html")
            .read_text("utf-8")
            .replace("{{title}}", title)
        )
        handlers = Handlers(self)
        self.routes = [
            Route("/", handlers.dashboard, methods=["GET"], include_in_schema=False),
            Route("/health", handlers.health, methods=["GET"]),
            Route("/openapi.json", handlers.openapi, methods=["GET"], include_in_schema=False),
            Route("/stats", handlers.stats, methods=["GET"]),
            Route("/metrics", handlers.metrics, methods=["GET"]),
            Route("/keys", handlers.keys, methods=["GET"]),
            Route("/entries/{key:path}", handlers.entry, methods=["GET"]),
            Route("/entries/{key:path}", handlers.delete_entry, methods=["DELETE"]),
            Route("/invalidate", handlers.invalidate, methods=["POST"]),
            Route("/warmers", handlers.warming.warmers, methods=["GET"]),
            Route("/warm", handlers.warming.warm, methods=["POST"]),
            Route("/flush", handlers.flush, methods=["POST"]),
        ]
        if table_invalidator is not None:
            self.routes.append(
                Route("/sql/invalidate-tables", handlers.invalidate_tables, methods=["POST"])
            )
        self.app = Starlette(
            routes=self.routes,
            exception_handlers={
                Problem: _on_problem,
                HTTPException: _on_http_exception,
                Exception: _on_error,
            },
            lifespan=self._lifespan,
        )
        self._schema: dict[str, Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.cache.start()
        try:
            yield
        finally:
            await self.cache.close()

    # -- what handlers use -------------------------------------------------------------------
    def record(self, action: AdminAction) -> None:
        """Hand ``action`` to every audit hook (a failing hook is logged, never raised)."""
        for hook in self.audit_hooks:
            try:
                hook(action)
            except Exception:
                log.exception("stratacache admin: audit hook %r failed", hook)

    def snapshot(self) -> dict[str, Any]:
        """``cache.stats()`` plus breaker, bus and hot-key state (the ``/stats`` body)."""
        stats: dict[str, Any] = dict(self.cache.stats())
        stats["breakers"] = {
            slot.name: "open" if slot.breaker.is_open else "closed"
            for slot in self.cache.tiers.slots
        }
        stats["bus"] = {
            "configured": self.cache.bus is not None,
            "connected": self.cache.bus is not None and self.cache.local_trusted,
        }
        hot = self.cache.hot
        stats["top_keys"] = (
            [{"key": self.cache.relative_key(k), "count": c} for k, c in hot.top(20)]
            if hot is not None
            else None
        )
        return stats

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text of ``registry`` and its content type."""
        return exposition(self.registry)

    def warmer_table(self) -> dict[str, tuple[Callable[..., Any], Any]]:
        """Registered warmers by name (the function's qualified name)."""
        table: dict[str, tuple[Callable[..., Any], Any]] = {}
        for fn, args in self.cache.warmers:
            name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", repr(fn))
            table[f"{getattr(fn, '__module__', '')}.{name}".lstrip(".")] = (fn, args)
        return table

    def openapi_document(self, root_path: str = "") -> dict[str, Any]:
        """The OpenAPI document (``servers`` points at ``root_path``, the mount path)."""
        if self._schema is None:
            generator = SchemaGenerator(
                {
                    "openapi": "3.1.0",
                    "info": {"title": self.title, "version": _version()},
                    "components": {
                        "schemas": {**component_schemas(), "Problem": _PROBLEM_SCHEMA},
                        "responses": {
                            "Problem": {
                                "description": "RFC 9457 problem details",
                                "content": {
                                    "application/problem+json": {
                                        "schema": {"$ref": "#/components/schemas/Problem"}
                                    }
                                },
                            }
                        },
                        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
                    },
                }
            )
            self._schema = generator.get_schema(list[BaseRoute](self.routes))
        return {**self._schema, "servers": [{"url": root_path or "/"}]}


_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("stratacache")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


async def _on_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(request, exc)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    return problem_response(request, Problem(exc.status_code, str(exc.detail), headers=headers))


async def _on_error(request: Request, exc: Exception) -> Response:
    log.error("stratacache admin: %s %s failed", request.method, request.url.path, exc_info=exc)
    return problem_response(request, Problem(500, "internal error (see the server log)"))

"""The admin API's endpoints. Each docstring's YAML part is its OpenAPI operation."""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from .auth import ADMIN, READ
from .inspect import MAX_PAGE, describe, key_page
from .models import FlushRequest, InvalidateRequest, TablesRequest
from .mutations import Mutations, engine_call
from .parsing import int_param, parse_body
from .problems import Problem, json_response
from .warm_routes import WarmRoutes

if TYPE_CHECKING:
    from .app import AdminAPI


class Handlers:
    """Endpoint methods bound to one ``AdminAPI``."""

    def __init__(self, api: AdminAPI) -> None:
        self.api = api
        self.cache = api.cache
        self.mutations = Mutations(api)
        #: the warming endpoints
        self.warming = WarmRoutes(api, self.mutations)

    # -- open routes -------------------------------------------------------------------------
    async def dashboard(self, request: Request) -> Response:
        """The operator dashboard (HTML; its data come from /stats with the caller's token)."""
        self.api.guard.check_open(request)
        return HTMLResponse(self.api.dashboard_html)

    async def health(self, request: Request) -> Response:
        """Liveness.
        ---
        summary: Liveness check (no token needed)
        tags: [status]
        responses:
          "200": {description: The API is up, content: {application/json: {schema: {type: object}}}}
        """
        self.api.guard.check_open(request)
        return json_response({"status": "ok", "namespace": self.cache.namespace})

    async def openapi(self, request: Request) -> Response:
        """The OpenAPI document of this API (no token needed)."""
        self.api.guard.check_open(request)
        return json_response(self.api.openapi_document(request.scope.get("root_path", "")))

    # -- read scope --------------------------------------------------------------------------
    async def stats(self, request: Request) -> Response:
        """Counters per tier, per decorated function and for the engine.
        ---
        summary: Cache statistics, circuit breakers, bus state and hot keys
        tags: [status]
        security: [{bearer: []}]
        responses:
          "200": {description: Counters and state, content: {application/json: {schema: {type: object}}}}
          "401": {$ref: "#/components/responses/Problem"}
        """
        self.api.guard.require(request, READ)
        return json_response(self.api.snapshot())

    async def metrics(self, request: Request) -> Response:
        """Prometheus text exposition of this cache.
        ---
        summary: Prometheus metrics (text exposition format)
        tags: [status]
        security: [{bearer: []}]
        responses:
          "200": {description: Metrics, content: {text/plain: {schema: {type: string}}}}
          "401": {$ref: "#/components/responses/Problem"}
        """
        self.api.guard.require(request, READ)
        body, content_type = self.api.exposition()
        return Response(body, media_type=content_type)

    async def keys(self, request: Request) -> Response:
        """A page of keys.
        ---
        summary: List keys, one bounded page at a time (Redis SCAN where Redis is a tier)
        tags: [entries]
        security: [{bearer: []}]
        parameters:
          - {name: prefix, in: query, schema: {type: string, default: ""}}
          - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 1000, default: 100}}
          - {name: cursor, in: query, schema: {type: string}}
          - {name: tier, in: query, schema: {type: string}}
        responses:
          "200": {description: "Keys and the cursor of the next page (null: done)", content: {application/json: {schema: {type: object}}}}
          "400": {$ref: "#/components/responses/Problem"}
          "401": {$ref: "#/components/responses/Problem"}
        """
        self.api.guard.require(request, READ)
        query = request.query_params
        limit = int_param(query.get("limit", "100"), "limit", 1, MAX_PAGE)
        page = await key_page(
            self.cache,
            query.get("prefix", ""),
            limit,
            query.get("cursor", ""),
            query.get("tier"),
        )
        return json_response(page)

    async def entry(self, request: Request) -> Response:
        """One entry as each tier holds it.
        ---
        summary: Inspect an entry in every tier (the value only with value=1 and the admin token)
        tags: [entries]
        security: [{bearer: []}]
        parameters:
          - {name: key, in: path, required: true, schema: {type: string}}
          - {name: value, in: query, schema: {type: integer, enum: [0, 1]}}
        responses:
          "200": {description: "Per-tier presence, TTL, tags, size and age", content: {application/json: {schema: {type: object}}}}
          "400": {$ref: "#/components/responses/Problem"}
          "401": {$ref: "#/components/responses/Problem"}
          "403": {$ref: "#/components/responses/Problem"}
          "404": {$ref: "#/components/responses/Problem"}
        """
        with_value = request.query_params.get("value", "0")
        if with_value not in ("0", "1"):
            raise Problem(400, "value must be 0 or 1")
        self.api.guard.require(request, ADMIN if with_value == "1" else READ)
        key = request.path_params["key"]
        return json_response(await engine_call(describe(self.cache, key, with_value == "1")))

    # -- admin scope -------------------------------------------------------------------------
    async def delete_entry(self, request: Request) -> Response:
        """Remove one key everywhere.
        ---
        summary: Delete a key from every tier and every process
        tags: [invalidation]
        security: [{bearer: []}]
        parameters:
          - {name: key, in: path, required: true, schema: {type: string}}
          - {name: reason, in: query, schema: {type: string, maxLength: 500}}
        responses:
          "200": {description: Deleted, content: {application/json: {schema: {type: object}}}}
          "400": {$ref: "#/components/responses/Problem"}
          "401": {$ref: "#/components/responses/Problem"}
          "403": {$ref: "#/components/responses/Problem"}
        """
        caller = self.api.guard.require(request, ADMIN)
        key = request.path_params["key"]
        reason = request.query_params.get("reason")
        if reason is not None and len(reason) > 500:
            raise Problem(400, "reason is longer than 500 characters")
        target = {"keys": [key]}

        async def run() -> Any:
            await self.cache.invalidate(keys=[key], reason=reason, actor=caller.actor)
            return {"deleted": key}

        return await self.mutations.respond(caller, "delete", target, reason, run)

    async def invalidate(self, request: Request) -> Response:
        """Invalidate keys, tags and a prefix.
        ---
        summary: Invalidate keys, tags and/or a key prefix in every tier and process
        tags: [invalidation]
        security: [{bearer: []}]
        requestBody:
          required: true
          content: {application/json: {schema: {$ref: "#/components/schemas/InvalidateRequest"}}}
        responses:
          "200": {description: Invalidated, content: {application/json: {schema: {type: object}}}}
          "400": {$ref: "#/components/responses/Problem"}
          "401": {$ref: "#/components/responses/Problem"}
          "403": {$ref: "#/components/responses/Problem"}
          "413": {$ref: "#/components/responses/Problem"}
        """
        caller = self.api.guard.require(request, ADMIN)
        body = await parse_body(request, self.api.max_body, InvalidateRequest)
        target = {"keys": body.keys, "tags": body.tags, "prefix": body.prefix}

        async def run() -> Any:
            await self.cache.invalidate(
                keys=body.keys,
                tags=body.tags,
                prefix=body.prefix,
                reason=body.reason,
                actor=caller.actor,
            )
            return {"invalidated": target}

        return await self.mutations.respond(caller, "invalidate", target, body.reason, run)

    async def flush(self, request: Request) -> Response:
        """Remove every entry.
        ---
        summary: 'Remove every entry of the namespace (needs {"confirm": true})'
        tags: [invalidation]
        security: [{bearer: []}]
        requestBody:
          required: true
          content: {application/json: {schema: {$ref: "#/components/schemas/FlushRequest"}}}
        responses:
          "200": {description: Flushed, content: {application/json: {schema: {type: object}}}}
          "400": {$ref: "#/components/responses/Problem"}
          "401": {$ref: "#/components/responses/Problem"}
          "403": {$ref: "#/components/responses/Problem"}
        """
        caller = self.api.guard.require(request, ADMIN)
        body = await parse_body(request, self.api.max_body, FlushRequest)
        if not body.confirm:
            raise Problem(400, 'flushing removes every entry: send {"confirm": true}')

        async def run() -> Any:
            await self.cache.clear(reason=body.reason, actor=caller.actor)
            return {"flushed": self.cache.namespace}

        return await self.mutations.respond(
            caller, "flush", {"namespace": self.cache.namespace}, body.reason, run
        )

    async def invalidate_tables(self, request: Request) -> Response:
        """Invalidate cached query results by table.
        ---
        summary: Drop every cached query result that read these tables (SQL query cache)
        tags: [invalidation]
        security: [{bearer: []}]
        requestBody:
          required: true
          content: {application/json: {schema: {$ref: "#/components/schemas/TablesRequest"}}}
        responses:
          "200": {description: Invalidated, content: {application/json: {schema: {type: object}}}}
          "400": {$ref: "#/components/responses/Problem"}
          "401": {$ref: "#/components/responses/Problem"}
          "403": {$ref: "#/components/responses/Problem"}
        """
        caller = self.api.guard.require(request, ADMIN)
        body = await parse_body(request, self.api.max_body, TablesRequest)
        hook = self.api.table_invalidator
        if hook is None:  # the route is only mounted with one; this keeps the types honest
            raise Problem(404, "this admin API has no SQL query cache")

        async def run() -> Any:
            outcome = hook(list(body.tables))
            if inspect.isawaitable(outcome):
                await outcome
            return {"invalidated": {"tables": body.tables}}

        target = {"tables": body.tables}
        return await self.mutations.respond(caller, "invalidate_tables", target, body.reason, run)

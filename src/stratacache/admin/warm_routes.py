"""The admin API's warming endpoints: list the warmers, run them (NDJSON progress on ask)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sized
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..warming import warm
from .auth import ADMIN, READ, Caller
from .models import WarmRequest
from .mutations import Mutations
from .parsing import parse_body
from .problems import Problem, dumps, json_response

if TYPE_CHECKING:
    from .app import AdminAPI

#: seconds between two progress lines of a streamed warm
PROGRESS_EVERY = 0.2


class WarmRoutes:
    """The ``/warmers`` and ``/warm`` endpoints of one ``AdminAPI``."""

    def __init__(self, api: AdminAPI, mutations: Mutations) -> None:
        self.api = api
        self.cache = api.cache
        self.mutations = mutations

    async def warmers(self, request: Request) -> Response:
        """Names of the registered warmers.
        ---
        summary: List the registered warmers
        tags: [warming]
        security: [{bearer: []}]
        responses:
          "200": {description: Warmer names, content: {application/json: {schema: {type: object}}}}
          "401": {$ref: "#/components/responses/Problem"}
        """
        self.api.guard.require(request, READ)
        return json_response({"warmers": sorted(self.api.warmer_table())})

    async def warm(self, request: Request) -> Response:
        """Run warmers.
        ---
        summary: Run registered warmers by name (all when none is named)
        tags: [warming]
        security: [{bearer: []}]
        requestBody:
          required: true
          content: {application/json: {schema: {$ref: "#/components/schemas/WarmRequest"}}}
        responses:
          "200":
            description: "The summary; with Accept: application/x-ndjson, progress lines then the summary"
            content:
              application/json: {schema: {type: object}}
              application/x-ndjson: {schema: {type: string}}
          "400": {$ref: "#/components/responses/Problem"}
          "401": {$ref: "#/components/responses/Problem"}
          "403": {$ref: "#/components/responses/Problem"}
        """
        caller = self.api.guard.require(request, ADMIN)
        body = await parse_body(request, self.api.max_body, WarmRequest)
        table = self.api.warmer_table()
        names = sorted(table) if body.warmers is None else list(dict.fromkeys(body.warmers))
        unknown = [n for n in names if n not in table]
        if unknown:
            known = ", ".join(sorted(table)) or "none registered"
            raise Problem(400, f"unknown warmer(s) {unknown}; known: {known}")
        target = {"warmers": names, "from_hot": body.from_hot}
        latest: list[Any] = [None]

        def track(state: Any) -> None:
            latest[0] = state

        async def run() -> Any:
            summary = await warm(
                self.cache,
                warmers=[table[n] for n in names],
                from_hot=body.from_hot,
                concurrency=body.concurrency,
                progress=track,
            )
            errors = [f"{where}: {exc!r}" for where, _, exc in summary.errors[:20]]
            return {
                "warmed": summary.warmed,
                "failed": summary.failed,
                "took": round(summary.took, 3),
                "errors": errors,
            }

        if "application/x-ndjson" in request.headers.get("accept", ""):
            total = _known_total([table[n] for n in names]) if not body.from_hot else None
            stream = self._progress(caller, target, body.reason, run, latest, total)
            return StreamingResponse(stream, media_type="application/x-ndjson")
        return await self.mutations.respond(caller, "warm", target, body.reason, run)

    async def _progress(
        self,
        caller: Caller,
        target: dict[str, Any],
        reason: str | None,
        run: Callable[[], Awaitable[Any]],
        latest: list[Any],
        total: int | None,
    ) -> AsyncIterator[bytes]:
        """NDJSON lines while warming: ``{"total"}``, ``{"done", "warmed", "failed"}`` at most
        every ``PROGRESS_EVERY`` seconds, then ``{"summary"}`` or ``{"error"}``."""
        yield _line({"total": total})
        task = asyncio.ensure_future(self.mutations.perform(caller, "warm", target, reason, run))
        sent = None
        while not task.done():
            await asyncio.wait({task}, timeout=PROGRESS_EVERY)
            state = latest[0]
            if state is not None and state.done != sent:
                sent = state.done
                yield _line({"done": state.done, "warmed": state.warmed, "failed": state.failed})
        try:
            yield _line({"summary": task.result()})
        except Problem as problem:
            yield _line({"error": problem.detail})


def _known_total(warmers: list[tuple[Callable[..., Any], Any]]) -> int | None:
    """How many items the warmers will run, when every argument list has a length."""
    sizes = [len(args) for _, args in warmers if isinstance(args, Sized)]
    return sum(sizes) if len(sizes) == len(warmers) else None


def _line(data: Any) -> bytes:
    return dumps(data) + b"\n"

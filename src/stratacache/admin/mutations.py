"""The admin API's mutations: run one, audit its outcome, answer with it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from ..core.errors import StratacacheError
from .audit import AdminAction
from .auth import Caller
from .problems import Problem, json_response

if TYPE_CHECKING:
    from .app import AdminAPI


class Mutations:
    """Runs the mutations of one ``AdminAPI`` and sends each outcome to its audit hooks."""

    def __init__(self, api: AdminAPI) -> None:
        self.api = api

    async def respond(
        self,
        caller: Caller,
        action: str,
        target: dict[str, Any],
        reason: str | None,
        run: Callable[[], Awaitable[Any]],
    ) -> Response:
        """Run a mutation, audit it and answer with its outcome."""
        return json_response(await self.perform(caller, action, target, reason, run))

    async def perform(
        self,
        caller: Caller,
        action: str,
        target: dict[str, Any],
        reason: str | None,
        run: Callable[[], Awaitable[Any]],
    ) -> Any:
        """Run a mutation and send its outcome, success or failure, to the audit hooks."""
        try:
            outcome = await engine_call(run())
        except Problem as problem:
            self.api.record(
                AdminAction(
                    time.time(), caller.actor, action, target, reason, "error", problem.detail
                )
            )
            raise
        self.api.record(
            AdminAction(time.time(), caller.actor, action, target, reason, "ok", outcome)
        )
        return outcome


async def engine_call(call: Awaitable[Any]) -> Any:
    """Await an engine call; a stratacache error (a bad key, say) becomes a 400 problem."""
    try:
        return await call
    except StratacacheError as exc:
        raise Problem(400, str(exc)) from exc

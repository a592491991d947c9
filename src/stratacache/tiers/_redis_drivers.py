"""The two drivers of ``RedisTier``'s operations: one on the asyncio client, one blocking.

Why: every operation is a generator of Redis calls (see ``_redis_client``); these run
one to its end on the client of their mode, reload the scripts once when Redis lost
them, and turn driver errors into ``TierError``, the same way for both modes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from redis.exceptions import NoScriptError

from ..core.errors import TierError
from ._redis_client import ASYNC_DRIVER_ERRORS, DRIVER_ERRORS, SCRIPTS, Op, T, timeout

if TYPE_CHECKING:
    from .redis import RedisTier


async def run(tier: RedisTier, op: str, factory: Callable[[], Op[T]]) -> T:
    """Run the operation ``factory`` makes on this loop's client (``op`` names it in errors)."""
    sides = tier.sides
    if sides is None:
        raise TierError(tier.name, op, RuntimeError("tier not started"))
    side = sides.get()
    for attempt in (0, 1):
        gen = factory()
        try:
            step = next(gen)
            while True:
                # a batch's chunk carries a budget that grows with its size
                async with timeout(getattr(step, "budget", tier.op_timeout)):
                    result = await step(side)
                step = gen.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except NoScriptError as exc:
            if attempt:
                raise TierError(tier.name, op, exc) from exc
            for src in SCRIPTS.values():
                await side.c.script_load(src)
        except ASYNC_DRIVER_ERRORS as exc:
            raise TierError(tier.name, op, exc) from exc
    raise AssertionError("unreachable")  # pragma: no cover


def run_sync(tier: RedisTier, op: str, factory: Callable[[], Op[T]]) -> T:
    """Run the operation ``factory`` makes on the blocking client (no event-loop hop)."""
    side = tier.sync_side
    if side is None:
        raise TierError(tier.name, op, RuntimeError("tier not started"))
    for attempt in (0, 1):
        gen = factory()
        try:
            step = next(gen)
            while True:
                step = gen.send(step(side))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except NoScriptError as exc:
            if attempt:
                raise TierError(tier.name, op, exc) from exc
            for src in SCRIPTS.values():
                side.c.script_load(src)
        except DRIVER_ERRORS as exc:
            raise TierError(tier.name, op, exc) from exc
    raise AssertionError("unreachable")  # pragma: no cover

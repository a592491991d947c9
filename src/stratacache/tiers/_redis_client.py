"""Client plumbing of ``RedisTier``: building redis-py clients, pipelines, scans, timeouts.

Operations in ``redis.py`` are generators yielding *steps* (callables taking a
``Side``, the sync or async client); the helpers here are such steps or build
the clients they run on.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Generator, Iterable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

from ..core.errors import ConfigError
from ..core.loops import abandon
from ..fleet.connection import RedisConnection
from . import _redis_scripts as rs

T = TypeVar("T")
#: one step of an operation: given a side (sync or async client), issue a call
Step = Callable[["Side"], Any]
Op = Generator[Step, Any, T]
#: one pipelined command, as raw arguments (cluster pipelines block some command methods)
Call = tuple[Any, ...]

SCAN_BATCH = 1000
#: what a failing Redis raises in a blocking call (``RedisClusterException`` is no ``RedisError``)
DRIVER_ERRORS: tuple[type[BaseException], ...] = (RedisError, RedisClusterException, OSError)
#: ... and in an asyncio call (our ``asyncio.timeout`` raises ``TimeoutError``)
ASYNC_DRIVER_ERRORS: tuple[type[BaseException], ...] = (*DRIVER_ERRORS, TimeoutError)
SCRIPTS = {
    "get": rs.GET_SCRIPT,
    "get_many": rs.GET_MANY_SCRIPT,
    "set": rs.SET_SCRIPT,
    "invalidate_tags": rs.INVALIDATE_TAGS_SCRIPT,
    "ensure_tags": rs.ENSURE_TAGS_SCRIPT,
}
SHA = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in SCRIPTS.items()}


class Side:
    """One client (sync or async) as seen by operations."""

    __slots__ = ("c",)

    def __init__(self, client: Any) -> None:
        self.c = client


def keep_side(side: Side) -> None:
    """A caller's client is the caller's to close."""


def abandon_side(side: Side) -> None:
    """Release a client of another (closed) event loop without using its sockets."""
    abandon(side.c)


def build_client(
    connection: RedisConnection,
    *,
    asynchronous: bool,
    options: dict[str, Any],
    retry: Retry | None,
    pool_timeout: float | None,
) -> Any:
    """A redis-py client (sync or asyncio) on ``connection`` (one Redis, Cluster or Sentinel).

    The asyncio client gets no socket timeout: redis-py would wrap every send in
    ``asyncio.wait_for`` (a task per call, ~12% of a hit under load); the tier bounds
    each call with one ``asyncio.timeout`` instead (a timer, no task). Nothing connects
    here (see ``RedisConnection``).
    """
    opts = dict(options)
    if asynchronous:
        opts["socket_timeout"] = None
    return connection.client(
        asynchronous=asynchronous, retry=retry, pool_timeout=pool_timeout, **opts
    )


def check_url(url: object) -> None:
    """A URL redis-py would refuse only when connecting (into a caller): refuse it here."""
    if not isinstance(url, str):
        raise ConfigError(f"RedisTier url must be a string, not {type(url).__name__}")
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"RedisTier url must start with redis://, rediss:// or unix://: {url!r}")
    try:
        parts.port  # noqa: B018  (raises ValueError when out of range)
    except ValueError as exc:
        raise ConfigError(f"RedisTier url has a bad port: {url!r} ({exc})") from exc


def pipeline(side: Side, calls: Iterable[Call]) -> Any:
    """Queue ``calls`` on a non-transactional pipeline and execute it (one round trip per node)."""
    pipe = side.c.pipeline(transaction=False)
    for call in calls:
        pipe.execute_command(*call)
    return pipe.execute()


def evalsha_set(side: Side, args: list[Any]) -> Any:
    """Run the set script (cluster mode sends it alone: its pipelines refuse EVALSHA)."""
    return side.c.evalsha(SHA["set"], *args)


def scan(side: Side, pattern: str) -> Any:
    """Every key matching ``pattern`` (all primaries in cluster mode), as a list."""
    it = side.c.scan_iter(match=pattern, count=SCAN_BATCH)
    if hasattr(it, "__aiter__"):

        async def collect() -> list[Any]:
            return [k async for k in it]

        return collect()
    return list(it)


if sys.version_info >= (3, 11):
    from asyncio import timeout
else:  # pragma: no cover - Python 3.10
    from async_timeout import timeout

__all__ = [
    "ASYNC_DRIVER_ERRORS",
    "DRIVER_ERRORS",
    "SCAN_BATCH",
    "SCRIPTS",
    "SHA",
    "Call",
    "Op",
    "Side",
    "Step",
    "T",
    "abandon_side",
    "build_client",
    "check_url",
    "evalsha_set",
    "keep_side",
    "pipeline",
    "scan",
    "timeout",
]

"""Chaos: Redis hung, killed, full, slow/cut behind a proxy, its pub/sub killed — under load.

Each scenario runs the load of ``harness.Load`` (two caches, 8 workers, an
invalidation every 50 ms) for a second, injects the fault for two seconds,
lifts it and keeps the load for two more. What must hold: no caller sees an
exception or a wrong value, no read is staler than the staleness bound after an
invalidation, the slowest call stays within the timeouts, Redis is used again
within a second of coming back, and the loader runs about once per key per
bound per cache during the outage (not once per call).
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from .harness import KEYS, STALENESS_BOUND, Load, Report
from .proxy import ChaosProxy

pytestmark = pytest.mark.slow

SLOWEST_ALLOWED = 2.0  # seconds: a few socket timeouts (0.2 s) before a breaker opens
BACK_WITHIN = 1.0


@pytest.fixture
def server(redis_factory: Callable[..., Any]) -> Iterator[Any]:
    """A private redis-server the scenario may hang, kill or fill."""
    proc = redis_factory()
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        os.kill(proc.proc.pid, signal.SIGCONT)
    proc.stop()


def _check(
    name: str,
    report: Report,
    outage_loads: bool = True,
    felt: bool = True,
    slowest: float | None = SLOWEST_ALLOWED,
) -> None:
    print(report.line(name))
    if felt:
        assert report.redis_errors > 0, report  # the fault really hit the tier
    assert report.calls > 500, report
    assert report.exceptions == 0, report.errors[:5]
    assert report.wrong_values == 0, report
    assert report.stale_reads == 0, report
    if slowest is not None:
        assert report.slowest_call <= slowest, report
    assert report.back_after is not None and report.back_after <= BACK_WITHIN, report
    if outage_loads:  # ~1 load per key per bound per cache, plus one per invalidation
        per_bound = len(KEYS) * 2 * (report.outage / STALENESS_BOUND + 1)
        invalidations = report.outage / 0.05
        assert report.loads_during_outage <= per_bound + 2 * invalidations, report


def _namespace() -> str:
    return "chaos" + uuid.uuid4().hex[:6]


async def test_redis_hung_sigstop(server: Any) -> None:
    """SIGSTOP for 2 s then SIGCONT: callers are served, Redis is used within 1 s after."""

    async def fault() -> None:
        os.kill(server.proc.pid, signal.SIGSTOP)

    async def lift() -> None:
        os.kill(server.proc.pid, signal.SIGCONT)

    _check("sigstop", await Load(server.url, _namespace()).run(fault, lift))


async def test_redis_hung_sigstop_with_the_fleet_lock(server: Any) -> None:
    """The same with lock=True on every read: once the breaker is open the lock is not asked
    (loads run in each process, their values stay out of Redis): no wrong or stale value.
    An acquire lost in the hang runs when Redis resumes; its token is released then, so no
    miss waits for that lock's lease (10 s) in the other cache.
    """

    async def fault() -> None:
        os.kill(server.proc.pid, signal.SIGSTOP)

    async def lift() -> None:
        os.kill(server.proc.pid, signal.SIGCONT)

    load = Load(server.url, _namespace(), lock=True)
    _check("sigstop+lock", await load.run(fault, lift))


async def test_redis_killed_and_restarted(server: Any) -> None:
    """SIGKILL, 2 s down, restarted on the same port (empty): served throughout, back in 1 s."""

    async def fault() -> None:
        server.stop()

    async def lift() -> None:
        await asyncio.to_thread(server.start)

    _check("kill+restart", await Load(server.url, _namespace()).run(fault, lift))


async def test_redis_full_noeviction(server: Any) -> None:
    """maxmemory reached with noeviction (writes refused) for 2 s: reads go on, nothing raises."""
    raw = redis.Redis.from_url(server.url)

    async def fault() -> None:
        raw.set("ballast", b"x" * 256 * 1024)
        used = int(raw.info("memory")["used_memory"])  # type: ignore[index]
        raw.config_set("maxmemory-policy", "noeviction")
        raw.config_set("maxmemory", used - 128 * 1024)  # over the limit: writes are refused

    async def lift() -> None:
        raw.delete("ballast")
        raw.config_set("maxmemory", 0)

    report = await Load(server.url, _namespace()).run(fault, lift)
    raw.close()
    _check("maxmemory-noeviction", report, outage_loads=False)


async def test_proxy_latency_and_cut_connections(server: Any) -> None:
    """Behind a proxy: 2 s of 100 ms latency with every connection cut twice, then clean."""
    proxy = ChaosProxy(server.port)
    await proxy.start()

    async def fault() -> None:
        proxy.latency = 0.1
        proxy.cut()
        asyncio.get_running_loop().call_later(1.0, proxy.cut)

    async def lift() -> None:
        proxy.latency = 0.0

    report = await Load(proxy.url, _namespace()).run(fault, lift)
    await proxy.close()
    _check("proxy latency+cuts", report, outage_loads=False)


async def test_pubsub_connections_killed(server: Any) -> None:
    """CLIENT KILL TYPE pubsub (twice): the bus comes back, no stale read beyond the bound."""
    raw = redis.Redis.from_url(server.url)

    async def fault() -> None:
        raw.client_kill_filter(_type="pubsub")

    async def lift() -> None:
        raw.client_kill_filter(_type="pubsub")

    report = await Load(server.url, _namespace()).run(fault, lift)
    raw.close()
    _check("pubsub killed", report, outage_loads=False, felt=False)

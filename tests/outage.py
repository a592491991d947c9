"""Redis outages for tests: a server that may be paused (SIGSTOP), a cache whose breaker opens
at the first failure, and a spy counting the fleet lock's calls (the lock itself still runs)."""

from __future__ import annotations

import os
import signal
import uuid
from typing import Any

import stratacache as sc


def hang(server: Any) -> None:
    """Pause ``server``: it keeps its connections but answers nothing."""
    os.kill(server.proc.pid, signal.SIGSTOP)


def resume(server: Any) -> None:
    """Let a paused ``server`` answer again (a no-op on one that was never paused)."""
    if server.proc is not None:
        os.kill(server.proc.pid, signal.SIGCONT)


def breaker_cache(url: str, prefix: str) -> sc.Cache:
    """Memory above Redis, its circuit opened by the first failed call, no bus."""
    return sc.Cache(
        tiers=[sc.MemoryTier(), sc.RedisTier(url=url, socket_timeout=0.2)],
        namespace=prefix + uuid.uuid4().hex[:6],
        breaker_threshold=1,  # the first failed read opens the circuit
        bus=False,
    )


class LockSpy:
    """Counts the fleet lock's calls (the lock itself still runs: no Redis is faked)."""

    def __init__(self, lock: Any) -> None:
        self.calls: list[str] = []
        for name in ("start", "acquire", "acquire_sync"):
            setattr(lock, name, self._counting(name, getattr(lock, name)))

    def _counting(self, name: str, method: Any) -> Any:
        def call(*args: Any) -> Any:
            self.calls.append(name)
            return method(*args)

        return call

"""Blocking read-through: the async decisions with threads for I/O."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import stratacache as sc
from stratacache.core.errors import ConfigError
from stratacache.engine import signals


def test_stale_if_error_serves_the_old_value() -> None:
    """A failing loader within the stale window serves the stale value (counted, signalled)."""
    clock = sc.ManualClock()
    cache = sc.Cache([sc.MemoryTier()], namespace="srt", clock=clock, default_ttl=10, stale_ttl=60)
    stale: list[str] = []

    def fail() -> Any:
        raise ValueError("source down")

    with (
        cache.sync as facade,
        signals.stale_served.connected_to(lambda _s, key, reason: stale.append(reason)),
    ):
        facade.get_or_set("k", lambda: "old")
        clock.advance(20)
        assert facade.get_or_set("k", fail) == "old"
    assert stale == ["error"] and cache.counters.stale_if_error == 1


def test_a_lock_without_blocking_methods_is_refused() -> None:
    """Sync callers need a lock with the blocking methods: a clear ConfigError otherwise."""

    class AsyncOnly:
        wait_timeout = 1.0

    cache = sc.Cache([sc.MemoryTier()], namespace="srt")
    with pytest.raises(ConfigError):
        cache.sync.resolve_lock(AsyncOnly())
    cache.sync.close()


def test_concurrent_threads_share_one_load() -> None:
    """Threads missing one key together run the loader once (single-flight)."""
    cache = sc.Cache([sc.MemoryTier()], namespace="srt")
    gate = threading.Event()
    calls: list[int] = []

    def loader() -> int:
        calls.append(1)
        gate.wait(30)
        return 7

    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.sync.get_or_set("k", loader)))
        for _ in range(4)
    ]
    with cache.sync:
        for thread in threads:
            thread.start()
        from tests.waiting import wait_until

        wait_until(lambda: cache.counters.coalesced == 3 and len(calls) == 1, what="followers")
        gate.set()
        for thread in threads:
            thread.join(30)
    assert results == [7] * 4 and len(calls) == 1

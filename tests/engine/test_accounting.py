"""Accounting: each read-through event is counted and signalled the same way on both paths."""

from __future__ import annotations

from typing import Any

from stratacache.engine import accounting, signals
from stratacache.engine.accounting import Recorder
from stratacache.engine.stats import CacheStats, FunctionStats


def test_recorder_signals_with_the_cache_as_sender() -> None:
    """``Recorder.signal`` sends from the cache it records for."""
    got: list[Any] = []
    rec = Recorder(CacheStats(), sender="the-cache")
    with signals.refused_set.connected_to(lambda s, **kw: got.append((s, kw))):
        accounting.refused_set(rec, "ns:k")
    assert got == [("the-cache", {"key": "ns:k"})] and rec.counters.refused_sets == 1


def test_refresh_served_tells_early_from_stale() -> None:
    """An XFetch draw counts as an early refresh; past the soft TTL as stale served."""
    rec = Recorder(CacheStats(), sender=None)
    fstats = FunctionStats()
    accounting.refresh_served(rec, "k", fstats, early=True)
    accounting.refresh_served(rec, "k", fstats, early=False)
    assert rec.counters.early_refreshes == 1 and rec.counters.stale_served == 1
    assert fstats.early_refreshes == 1 and fstats.stale_served == 1


def test_loads_and_failures_are_counted_per_function() -> None:
    """Loads and loader failures count on the engine and on the decorated function."""
    rec = Recorder(CacheStats(), sender=None)
    fstats = FunctionStats()
    accounting.loaded(rec, "k", fstats, 0.01)
    accounting.load_failed(rec, "k", fstats, ValueError("x"))
    accounting.stale_if_error(rec, "k", fstats, ValueError("x"))
    assert (rec.counters.loads, rec.counters.load_errors, rec.counters.stale_if_error) == (1, 1, 1)
    assert (fstats.loads, fstats.load_errors, fstats.stale_served) == (1, 1, 1)

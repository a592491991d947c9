"""Plain-integer counters: incremented on the hot path, exported at read/scrape time."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, fields
from typing import Any

#: upper bounds (seconds) of the tier-operation latency buckets: a local round trip to a slow one
LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class LatencyHistogram:
    """Counts of durations per ``LATENCY_BUCKETS`` bucket (last: above them all), and their sum."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds


class OperationTimes:
    """Latency histograms of one tier, per operation (``get``, ``set``, ``delete`` ...)."""

    __slots__ = ("operations",)

    def __init__(self) -> None:
        self.operations: dict[str, LatencyHistogram] = {}

    def observe(self, operation: str, seconds: float) -> None:
        histogram = self.operations.get(operation)
        if histogram is None:
            histogram = self.operations[operation] = LatencyHistogram()
        histogram.observe(seconds)


@dataclass(slots=True)
class TierStats:
    """Counters of one tier as seen by the engine."""

    hits: int = 0
    misses: int = 0
    sets: int = 0
    deletes: int = 0
    errors: int = 0
    skipped: int = 0  # calls not made because the tier's circuit was open

    def as_dict(self, extra_hits: int = 0) -> dict[str, Any]:
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        data["hits"] += extra_hits
        lookups = data["hits"] + data["misses"]
        data["hit_rate"] = data["hits"] / lookups if lookups else 0.0
        return data


@dataclass(slots=True)
class FunctionStats:
    """Counters of one decorated function (``fast_hits`` are counted by the decorator itself)."""

    fast_hits: int = 0
    hits: int = 0
    misses: int = 0
    loads: int = 0
    load_errors: int = 0
    stale_served: int = 0
    early_refreshes: int = 0
    lock_waits: int = 0  # loads that waited for another process's value
    lock_fallbacks: int = 0  # waits that ended in loading anyway (lock down or holder too slow)
    scheduled_refreshes: int = 0  # recomputations started by refresh_every=

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        hits = data.pop("fast_hits") + data["hits"]
        data["hits"] = hits
        lookups = hits + data["misses"]
        data["hit_rate"] = hits / lookups if lookups else 0.0
        return data


@dataclass(slots=True)
class CacheStats:
    """Engine-wide counters of the freshness machinery."""

    loads: int = 0
    load_errors: int = 0
    coalesced: int = 0  # callers who waited on another caller's load (single-flight)
    stale_served: int = 0  # stale-while-revalidate and stale-if-error answers
    stale_if_error: int = 0
    early_refreshes: int = 0
    background_refreshes: int = 0
    refused_sets: int = 0  # writes refused because an invalidation voided their lease
    invalidations: int = 0
    lock_acquired: int = 0  # fleet-lock loads this process ran as the holder
    lock_waits: int = 0  # loads that waited for another process's value
    lock_fallbacks: int = 0  # waits that ended in loading anyway (lock down or wait bound hit)
    lock_takeovers: int = 0  # locks taken after a holder's lease ran out (the holder died)
    lock_errors: int = 0
    warmed: int = 0  # keys filled by warm()
    warm_failed: int = 0
    scheduled_refreshes: int = 0  # refreshes started by refresh_every=
    hot_refreshes: int = 0  # refresh-ahead of the hottest keys (engine.hotkeys)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

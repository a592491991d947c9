"""Plain-integer counters: incremented on the hot path, exported at read/scrape time."""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from typing_extensions import NotRequired

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


class TierStatsReport(TypedDict):
    """One tier's entry in ``Cache.stats()["tiers"]`` (counts since start; ``hit_rate`` in 0..1)."""

    hits: int
    misses: int
    sets: int
    deletes: int
    errors: int
    skipped: int
    hit_rate: float
    circuit_open: bool
    circuit_opened: int
    circuit_closed: int
    probes: int
    probe_failures: int
    evictions: NotRequired[int]
    decode_errors: NotRequired[int]
    #: Redis: entries a batch write could not store (each failed chunk also raises TierError)
    dropped_writes: NotRequired[int]
    #: Redis Cluster: calls refused fast because their node was down (the tier stays usable)
    node_errors: NotRequired[int]
    #: SQLite: waits for another connection's write lock that ran out (``lock_timeout``)
    lock_timeouts: NotRequired[int]
    entries: NotRequired[int]


class FunctionStatsReport(TypedDict):
    """One decorated function's entry in ``Cache.stats()["functions"]`` (fast hits folded in)."""

    hits: int
    misses: int
    loads: int
    load_errors: int
    stale_served: int
    early_refreshes: int
    lock_waits: int
    lock_fallbacks: int
    scheduled_refreshes: int
    hit_rate: float


class EngineStatsReport(TypedDict):
    """``Cache.stats()["engine"]``: ``CacheStats`` counters, moved values, invalidation replay."""

    loads: int
    load_errors: int
    coalesced: int
    stale_served: int
    stale_if_error: int
    early_refreshes: int
    background_refreshes: int
    refused_sets: int
    invalidations: int
    lock_acquired: int
    lock_waits: int
    lock_fallbacks: int
    lock_takeovers: int
    lock_errors: int
    warmed: int
    warm_failed: int
    scheduled_refreshes: int
    hot_refreshes: int
    moved_values: int
    invalidations_pending: int
    invalidations_kept: int
    invalidations_replayed: int
    invalidation_overflows: int


class StatsReport(TypedDict):
    """What ``Cache.stats()`` and ``cache.sync.stats()`` return.

    Keys: ``namespace``; ``tiers`` by tier name, top first; ``functions`` by decorated
    function name; ``engine``: the freshness machinery's counters.
    """

    namespace: str
    tiers: dict[str, TierStatsReport]
    functions: dict[str, FunctionStatsReport]
    engine: EngineStatsReport

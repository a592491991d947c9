"""What a cache exports, as plain points read at scrape time (no prometheus_client here).

Both exporters build on this: the in-process collector turns points into metric
families at each scrape; the multi-process exporter copies them into
prometheus-client's multiprocess files. The hot path only ever bumps plain integers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..engine.cache import Cache
from ..engine.stats import LATENCY_BUCKETS


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: name (without the prefix), type, help text and label names."""

    name: str
    kind: str  # "counter", "gauge" or "histogram"
    help: str
    labels: tuple[str, ...]


TIER = ("namespace", "tier")
FUNCTION = ("namespace", "function")

#: per-tier counters: stats field -> help
TIER_COUNTERS = {
    "hits": "Lookups this tier answered",
    "misses": "Lookups this tier could not answer",
    "sets": "Entries written to this tier",
    "deletes": "Keys removed from this tier by invalidation",
    "errors": "Tier calls that failed (the caller was served from elsewhere)",
    "skipped": "Tier calls skipped because the tier's circuit breaker was open",
    "evictions": "Entries this tier evicted to stay within its bounds",
    "decode_errors": "Stored values this tier could not decode (served as misses)",
    "circuit_opened": "Times the tier's circuit breaker opened",
    "probes": "Background probes of the tier while its breaker was open",
    "probe_failures": "Background probes the tier did not answer",
}
#: per-function counters: stats field -> help
FUNCTION_COUNTERS = {
    "hits": "Calls of this decorated function answered from the cache",
    "misses": "Calls of this decorated function the cache could not answer",
    "loads": "Calls of this function's loader (the decorated function itself)",
    "load_errors": "Loader calls of this function that raised",
    "stale_served": "Stale values this function served (stale-while-revalidate or stale-if-error)",
    "early_refreshes": "Early (XFetch) refreshes of this function's entries",
    "lock_waits": "Loads that waited for another process's value (fleet lock)",
    "lock_fallbacks": "Fleet-lock waits that ended in loading anyway",
    "scheduled_refreshes": "Recomputations started by refresh_every=",
}

FAMILIES: dict[str, Family] = {
    **{f"tier_{n}": Family(f"tier_{n}", "counter", h, TIER) for n, h in TIER_COUNTERS.items()},
    "tier_hit_ratio": Family("tier_hit_ratio", "gauge", "hits / (hits + misses) since start", TIER),
    "tier_entries": Family(
        "tier_entries", "gauge", "Entries held (tiers that know their size)", TIER
    ),
    "tier_bytes": Family(
        "tier_bytes", "gauge", "Bytes held (memory tiers bounded by max_bytes)", TIER
    ),
    "tier_circuit_open": Family(
        "tier_circuit_open", "gauge", "1 while the tier's circuit breaker is open", TIER
    ),
    "tier_operation_duration_seconds": Family(
        "tier_operation_duration_seconds",
        "histogram",
        "Seconds a call to a shared tier took, per operation",
        ("namespace", "tier", "operation"),
    ),
    **{
        f"function_{n}": Family(f"function_{n}", "counter", h, FUNCTION)
        for n, h in FUNCTION_COUNTERS.items()
    },
    "function_hit_ratio": Family(
        "function_hit_ratio", "gauge", "Decorated function hit ratio since start", FUNCTION
    ),
    "invalidations": Family(
        "invalidations",
        "counter",
        "Invalidations by kind (keys, tags, prefixes, clear) and origin (local, remote)",
        ("namespace", "kind", "origin"),
    ),
    "bus_connected": Family(
        "bus_connected", "gauge", "1 while the invalidation bus is connected", ("namespace",)
    ),
}


def engine_family(name: str) -> Family:
    """The family of one engine counter (``loads``, ``coalesced``, ``refused_sets`` ...)."""
    return Family(f"engine_{name}", "counter", f"Engine counter: {name}", ("namespace",))


@dataclass(frozen=True, slots=True)
class Point:
    """One sample: a counter/gauge value, or a histogram's per-bucket counts and sum."""

    family: Family
    labels: tuple[str, ...]
    value: float = 0.0
    buckets: tuple[int, ...] = ()  # per bucket (not cumulative), last one above every bound


class InvalidationCounts:
    """Invalidations per (namespace, kind, origin), counted from the engine's signals."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: dict[tuple[str, str, str], int] = {}

    def on_invalidated(self, sender: Any, **payload: Any) -> None:
        origin = str(payload.get("origin", "local"))
        for kind in ("keys", "tags", "prefixes"):
            if payload.get(kind):
                self._add(sender, kind, origin)

    def on_cleared(self, sender: Any, **payload: Any) -> None:
        self._add(sender, "clear", str(payload.get("origin", "local")))

    def _add(self, sender: Any, kind: str, origin: str) -> None:
        if isinstance(sender, Cache):
            key = (sender.namespace, kind, origin)
            with self._lock:
                self.counts[key] = self.counts.get(key, 0) + 1

    def snapshot(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self.counts)


def points(cache: Cache) -> Iterator[Point]:
    """Every point of ``cache`` (reads its plain counters; cheap, no lock on the hot path)."""
    stats: dict[str, Any] = dict(cache.stats())
    ns = str(stats["namespace"])
    for tier, data in stats["tiers"].items():
        labels = (ns, tier)
        for name in TIER_COUNTERS:
            if name in data:
                yield Point(FAMILIES[f"tier_{name}"], labels, float(data[name]))
        yield Point(FAMILIES["tier_hit_ratio"], labels, float(data["hit_rate"]))
        yield Point(FAMILIES["tier_circuit_open"], labels, 1.0 if data.get("circuit_open") else 0.0)
        if "entries" in data:
            yield Point(FAMILIES["tier_entries"], labels, float(data["entries"]))
    for slot in cache.tiers.slots:
        if getattr(slot.tier, "max_bytes", None) is not None and hasattr(slot.tier, "currsize"):
            yield Point(FAMILIES["tier_bytes"], (ns, slot.name), float(slot.tier.currsize))
        if slot.latency is None:
            continue
        for operation, histogram in list(slot.latency.operations.items()):
            yield Point(
                FAMILIES["tier_operation_duration_seconds"],
                (ns, slot.name, operation),
                histogram.sum,
                tuple(histogram.counts),
            )
    for function, data in stats["functions"].items():
        labels = (ns, function)
        for name in FUNCTION_COUNTERS:
            if name in data:
                yield Point(FAMILIES[f"function_{name}"], labels, float(data[name]))
        yield Point(FAMILIES["function_hit_ratio"], labels, float(data["hit_rate"]))
    for name, value in stats["engine"].items():
        yield Point(engine_family(name), (ns,), float(value))
    if cache.bus is not None:
        yield Point(FAMILIES["bus_connected"], (ns,), 1.0 if cache.local_trusted else 0.0)


def invalidation_points(counts: InvalidationCounts) -> Iterator[Point]:
    for labels, value in counts.snapshot().items():
        yield Point(FAMILIES["invalidations"], labels, float(value))


__all__ = [
    "FAMILIES",
    "LATENCY_BUCKETS",
    "Family",
    "InvalidationCounts",
    "Point",
    "engine_family",
    "invalidation_points",
    "points",
]

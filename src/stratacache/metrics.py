"""Prometheus exposition of a cache's counters, read at scrape time.

The engine counts hits, misses, sets, deletes, evictions and errors in plain
integers on the hot path. This module turns ``Cache.stats()`` into Prometheus
metric families only when Prometheus scrapes, so serving a cache hit never
touches ``prometheus_client``. The one histogram, loader duration, is fed
from the ``loaded`` signal: it runs on the miss path only, beside a loader
call that costs far more.

Typical use::

    from stratacache.metrics import instrument, start_http_server

    instrument(cache)                  # registers on prometheus_client's default registry
    start_http_server(9464)            # GET http://127.0.0.1:9464/metrics

Exported families (labels in brackets):

- ``stratacache_tier_{hits,misses,sets,deletes,errors,skipped,evictions}_total``,
  ``stratacache_tier_{circuit_opened,probes,probe_failures}_total``
  [namespace, tier], ``stratacache_tier_hit_ratio``, ``stratacache_tier_entries``,
  ``stratacache_tier_circuit_open``
- ``stratacache_function_{hits,misses,loads,load_errors,stale_served,early_refreshes}_total``
  [namespace, function], ``stratacache_function_hit_ratio``
- ``stratacache_engine_<counter>_total`` [namespace] for the engine's counters
  (loads, coalesced, stale_served, refused_sets, invalidations, ...)
- ``stratacache_loader_duration_seconds`` [namespace] histogram
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client import start_http_server as _prometheus_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .engine import signals
from .engine.cache import Cache

PREFIX = "stratacache"

#: per-tier counters exported as ``<prefix>_tier_<name>_total``
TIER_COUNTERS: tuple[str, ...] = ("hits", "misses", "sets", "deletes", "errors", "skipped")
TIER_COUNTERS += ("evictions", "circuit_opened", "probes", "probe_failures")
#: per-function counters exported as ``<prefix>_function_<name>_total``
FUNCTION_COUNTERS = ("hits", "misses", "loads", "load_errors", "stale_served", "early_refreshes")
#: loader-duration buckets in seconds: from a local query to a slow remote call
LOADER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

_HELP = {
    "hits": "Lookups answered by this tier",
    "misses": "Lookups this tier could not answer",
    "sets": "Entries written to this tier",
    "deletes": "Keys removed from this tier by invalidation",
    "errors": "Tier calls that failed (the caller was served from elsewhere)",
    "skipped": "Tier calls skipped because the tier's circuit breaker was open",
    "evictions": "Entries this tier evicted to stay within its bounds",
    "circuit_opened": "Times the tier's circuit breaker opened",
    "probes": "Background probes of the tier while its breaker was open",
    "probe_failures": "Background probes the tier did not answer",
    "loads": "Loader calls",
    "load_errors": "Loader calls that raised",
    "stale_served": "Stale values served (stale-while-revalidate or stale-if-error)",
    "early_refreshes": "Early (XFetch) refreshes triggered",
}


class CacheCollector:
    """A prometheus_client collector that reads ``stats()`` of its caches at each scrape.

    Caches are held weakly: a cache that is garbage-collected disappears from the
    exposition instead of being kept alive by the registry.
    """

    def __init__(self, caches: Iterable[Cache] = (), *, prefix: str = PREFIX) -> None:
        self.prefix = prefix
        self._caches: weakref.WeakSet[Cache] = weakref.WeakSet()
        self._lock = threading.Lock()
        for cache in caches:
            self.add(cache)

    def add(self, cache: Cache) -> None:
        """Export ``cache`` from the next scrape on."""
        with self._lock:
            self._caches.add(cache)

    def remove(self, cache: Cache) -> None:
        """Stop exporting ``cache``."""
        with self._lock:
            self._caches.discard(cache)

    @property
    def caches(self) -> list[Cache]:
        """The caches currently exported."""
        with self._lock:
            return list(self._caches)

    def describe(self) -> list[Metric]:
        """The family names this collector yields (lets a registry detect clashes up front)."""
        return list(self._families([]))

    def collect(self) -> Iterator[Metric]:
        """One metric family per counter, with a sample per cache and tier/function."""
        yield from self._families(self.caches)

    def _families(self, caches: Sequence[Cache]) -> Iterator[Metric]:
        p = self.prefix
        tier_labels = ["namespace", "tier"]
        fn_labels = ["namespace", "function"]
        tier_counters = {
            name: CounterMetricFamily(f"{p}_tier_{name}", _HELP[name], labels=tier_labels)
            for name in TIER_COUNTERS
        }
        tier_ratio = GaugeMetricFamily(
            f"{p}_tier_hit_ratio", "hits / (hits + misses) since start", labels=tier_labels
        )
        tier_entries = GaugeMetricFamily(
            f"{p}_tier_entries", "Entries held (tiers that know their size)", labels=tier_labels
        )
        tier_open = GaugeMetricFamily(
            f"{p}_tier_circuit_open",
            "1 while the tier's circuit breaker is open",
            labels=tier_labels,
        )
        fn_counters = {
            name: CounterMetricFamily(f"{p}_function_{name}", _HELP[name], labels=fn_labels)
            for name in FUNCTION_COUNTERS
        }
        fn_ratio = GaugeMetricFamily(
            f"{p}_function_hit_ratio", "Decorated function hit ratio since start", labels=fn_labels
        )
        engine: dict[str, CounterMetricFamily] = {}
        for cache in caches:
            stats = cache.stats()
            ns = str(stats["namespace"])
            for tier, data in stats["tiers"].items():
                labels = [ns, tier]
                for name, family in tier_counters.items():
                    family.add_metric(labels, float(data.get(name, 0)))
                tier_ratio.add_metric(labels, float(data["hit_rate"]))
                tier_open.add_metric(labels, 1.0 if data.get("circuit_open") else 0.0)
                if "entries" in data:
                    tier_entries.add_metric(labels, float(data["entries"]))
            for function, data in stats["functions"].items():
                labels = [ns, function]
                for name, family in fn_counters.items():
                    family.add_metric(labels, float(data.get(name, 0)))
                fn_ratio.add_metric(labels, float(data["hit_rate"]))
            for name, value in stats["engine"].items():
                if name not in engine:
                    engine[name] = CounterMetricFamily(
                        f"{p}_engine_{name}", f"Engine counter {name}", labels=["namespace"]
                    )
                engine[name].add_metric([ns], float(value))
        yield from tier_counters.values()
        yield from (tier_ratio, tier_entries, tier_open)
        yield from fn_counters.values()
        yield fn_ratio
        yield from engine.values()


class CacheMetrics:
    """What ``instrument`` registered: the collector and the loader-duration histogram."""

    def __init__(self, registry: CollectorRegistry, prefix: str, buckets: Sequence[float]) -> None:
        self.registry = registry
        self.collector = CacheCollector(prefix=prefix)
        self.loader_duration = Histogram(
            f"{prefix}_loader_duration_seconds",
            "Seconds a loader took on a cache miss",
            ["namespace"],
            registry=registry,
            buckets=tuple(buckets),
        )
        registry.register(self.collector)
        # blinker keeps receivers weakly; this bound method lives as long as self does
        self._receiver = self._on_loaded

    def add(self, cache: Cache) -> None:
        """Export ``cache`` and time its loaders."""
        self.collector.add(cache)
        signals.loaded.connect(self._receiver, sender=cache)

    def remove(self, cache: Cache) -> None:
        """Stop exporting ``cache``."""
        self.collector.remove(cache)
        signals.loaded.disconnect(self._receiver, sender=cache)

    def _on_loaded(self, sender: Any, **payload: Any) -> None:
        duration = payload.get("duration")
        if isinstance(sender, Cache) and isinstance(duration, float):
            self.loader_duration.labels(sender.namespace).observe(duration)

    def unregister(self) -> None:
        """Remove everything from the registry and stop listening to loader signals."""
        for cache in self.collector.caches:
            self.remove(cache)
        self.registry.unregister(self.collector)
        self.registry.unregister(self.loader_duration)


_instrumented: weakref.WeakKeyDictionary[CollectorRegistry, CacheMetrics] = (
    weakref.WeakKeyDictionary()
)
_instrument_lock = threading.Lock()


def instrument(
    *caches: Cache,
    registry: CollectorRegistry | None = None,
    prefix: str = PREFIX,
    buckets: Sequence[float] = LOADER_BUCKETS,
) -> CacheMetrics:
    """Export ``caches`` on ``registry`` (default: prometheus_client's global one).

    Calling it again with the same registry adds the caches to the metrics
    already registered there, so several caches share one set of families,
    told apart by their ``namespace`` label.
    """
    target = REGISTRY if registry is None else registry
    with _instrument_lock:
        metrics = _instrumented.get(target)
        if metrics is None:
            metrics = _instrumented[target] = CacheMetrics(target, prefix, buckets)
    for cache in caches:
        metrics.add(cache)
    return metrics


def start_http_server(
    port: int = 9464,
    addr: str = "127.0.0.1",
    *,
    caches: Iterable[Cache] = (),
    registry: CollectorRegistry | None = None,
) -> tuple[WSGIServer, threading.Thread]:
    """Serve ``/metrics`` on a daemon thread; ``caches`` are instrumented first.

    Binds to loopback by default: exposing metrics beyond the host is a choice
    to make explicitly (``addr="0.0.0.0"``). Returns the server and its thread
    (``server.shutdown()`` stops it).
    """
    target = REGISTRY if registry is None else registry
    caches = list(caches)
    if caches:
        instrument(*caches, registry=target)
    return _prometheus_http_server(port, addr, registry=target)


__all__ = [
    "CacheCollector",
    "CacheMetrics",
    "instrument",
    "start_http_server",
]

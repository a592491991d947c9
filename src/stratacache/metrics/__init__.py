"""Prometheus exposition of a cache's counters, read at scrape time.

The engine counts hits, misses, sets, deletes, evictions and errors in plain
integers on the hot path, and times calls to shared tiers (Redis, SQL) into
plain-integer histograms; an in-process (L1) call is never timed. This package
turns them into Prometheus metric families only when Prometheus scrapes, so
serving a cache hit never touches ``prometheus_client``. Loader durations are
observed from the ``loaded`` signal (miss path only); invalidations are counted
from the ``invalidated``/``cleared`` signals.

Typical use::

    from stratacache.metrics import instrument, start_http_server

    instrument(cache)                  # registers on prometheus_client's default registry
    start_http_server(9464)            # GET http://127.0.0.1:9464/metrics

or serve ``/metrics`` from the admin API. With several worker processes
(``uvicorn --workers N``), set ``PROMETHEUS_MULTIPROC_DIR`` to an empty
directory before starting them: every worker's ``/metrics`` then answers for
all workers (see ``stratacache.metrics.fleet``), and ``start_http_server`` in a
second worker leaves the port to the first one instead of failing.

Families (prefix ``stratacache_``; labels in brackets):

- ``tier_{hits,misses,sets,deletes,errors,skipped,evictions,decode_errors}_total``,
  ``tier_{circuit_opened,probes,probe_failures}_total``
  [namespace, tier]; ``tier_hit_ratio``, ``tier_entries``, ``tier_bytes``,
  ``tier_circuit_open`` gauges; ``tier_operation_duration_seconds`` histogram
  [namespace, tier, operation] (shared tiers only)
- ``function_{hits,misses,loads,load_errors,stale_served,early_refreshes,...}_total``
  [namespace, function]; ``function_hit_ratio``
- ``invalidations_total`` [namespace, kind, origin]
- ``engine_<counter>_total`` [namespace] for the engine's counters
- ``bus_connected`` [namespace] (caches with a bus)
- ``loader_duration_seconds`` [namespace] histogram
"""

from __future__ import annotations

import errno
import logging
import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client import start_http_server as _prometheus_http_server

from ..core.errors import ConfigError
from ..engine import signals
from ..engine.cache import Cache
from .collector import PREFIX, CacheCollector
from .fleet import FleetExporter, multiprocess_dir
from .points import FUNCTION_COUNTERS, TIER_COUNTERS, InvalidationCounts

log = logging.getLogger("stratacache")

#: loader-duration buckets in seconds: from a local query to a slow remote call
LOADER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class CacheMetrics:
    """What ``instrument`` set up on one registry: collector (or fleet exporter) and histogram."""

    def __init__(self, registry: CollectorRegistry, prefix: str, buckets: Sequence[float]) -> None:
        self.registry = registry
        self.invalidations = InvalidationCounts()
        self.fleet: FleetExporter | None = None
        self.collector = CacheCollector(prefix=prefix, invalidations=self.invalidations)
        if multiprocess_dir():
            self.fleet = FleetExporter(prefix, self.invalidations)
        else:
            registry.register(self.collector)
        self.loader_duration = Histogram(
            f"{prefix}_loader_duration_seconds",
            "Seconds a loader took on a cache miss",
            ["namespace"],
            registry=None if self.fleet is not None else registry,
            buckets=tuple(buckets),
        )
        # blinker keeps receivers weakly; these bound methods live as long as self does
        self._on_loaded_receiver = self._on_loaded
        self._on_invalidated = self.invalidations.on_invalidated
        self._on_cleared = self.invalidations.on_cleared

    def add(self, cache: Cache) -> None:
        """Export ``cache``, time its loaders and count its invalidations."""
        self.collector.add(cache)
        if self.fleet is not None:
            self.fleet.add(cache)
        signals.loaded.connect(self._on_loaded_receiver, sender=cache)
        signals.invalidated.connect(self._on_invalidated, sender=cache)
        signals.cleared.connect(self._on_cleared, sender=cache)

    def remove(self, cache: Cache) -> None:
        """Stop exporting ``cache``."""
        self.collector.remove(cache)
        if self.fleet is not None:
            self.fleet.remove(cache)
        signals.loaded.disconnect(self._on_loaded_receiver, sender=cache)
        signals.invalidated.disconnect(self._on_invalidated, sender=cache)
        signals.cleared.disconnect(self._on_cleared, sender=cache)

    def _on_loaded(self, sender: Any, **payload: Any) -> None:
        duration = payload.get("duration")
        if isinstance(sender, Cache) and isinstance(duration, float):
            self.loader_duration.labels(sender.namespace).observe(duration)

    def unregister(self) -> None:
        """Remove everything from the registry and stop listening to the signals."""
        for cache in self.collector.caches:
            self.remove(cache)
        if self.fleet is not None:
            self.fleet.stop()
        else:
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
    told apart by their ``namespace`` label. In multiprocess mode the values
    go to the multiprocess files instead (read them with ``exposition()``), and
    ``registry`` is ignored: one process has one set of those files, so it gets
    one exporter whatever the number of calls.
    """
    target = REGISTRY if registry is None or multiprocess_dir() else registry
    with _instrument_lock:
        metrics = _instrumented.get(target)
        if metrics is None:
            metrics = _instrumented[target] = CacheMetrics(target, prefix, buckets)
    for cache in caches:
        metrics.add(cache)
    return metrics


def exposition(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The Prometheus text of ``registry`` (default: the global one) and its content type.

    In multiprocess mode, the text of every worker process instead (this
    process's numbers are copied first, so they are current).
    """
    if multiprocess_dir():
        from prometheus_client.multiprocess import MultiProcessCollector

        for metrics in list(_instrumented.values()):
            if metrics.fleet is not None:
                metrics.fleet.sync()
        fleet_registry = CollectorRegistry()
        MultiProcessCollector(fleet_registry)  # type: ignore[no-untyped-call]
        return generate_latest(fleet_registry), CONTENT_TYPE_LATEST
    target = REGISTRY if registry is None else registry
    return generate_latest(target), CONTENT_TYPE_LATEST


def start_http_server(
    port: int = 9464,
    addr: str = "127.0.0.1",
    *,
    caches: Iterable[Cache] = (),
    registry: CollectorRegistry | None = None,
) -> tuple[WSGIServer, threading.Thread] | None:
    """Serve ``/metrics`` on a daemon thread; ``caches`` are instrumented first.

    Binds to loopback by default: exposing metrics beyond the host is a choice
    to make explicitly (``addr="0.0.0.0"``). Returns the server and its thread
    (``server.shutdown()`` stops it). In multiprocess mode, when another worker
    already serves ``port``, returns None: that worker's scrape covers this one.

    Raises:
        ConfigError: ``port`` is taken and multiprocess mode is off (several workers
            need ``PROMETHEUS_MULTIPROC_DIR``; see the module docstring).
    """
    target = REGISTRY if registry is None else registry
    caches = list(caches)
    if caches:
        instrument(*caches, registry=target)
    if multiprocess_dir():
        from prometheus_client.multiprocess import MultiProcessCollector

        target = CollectorRegistry()
        MultiProcessCollector(target)  # type: ignore[no-untyped-call]
    try:
        return _prometheus_http_server(port, addr, registry=target)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        if multiprocess_dir():
            log.info("stratacache: metrics port %d is served by another worker", port)
            return None
        raise ConfigError(
            f"metrics port {addr}:{port} is in use; with several worker processes set "
            "PROMETHEUS_MULTIPROC_DIR (every worker then answers for all) or serve /metrics "
            "from the admin API"
        ) from exc


__all__ = [
    "FUNCTION_COUNTERS",
    "TIER_COUNTERS",
    "CacheCollector",
    "CacheMetrics",
    "FleetExporter",
    "exposition",
    "instrument",
    "start_http_server",
]

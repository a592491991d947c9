"""Metrics of several worker processes (``uvicorn --workers N``) in one scrape.

prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before
the first import of ``prometheus_client``) keeps each process's values in files
that any process sums at scrape time. ``FleetExporter`` copies each cache's
plain counters into those files from a daemon thread every ``interval`` seconds
(and at each scrape in the scraping process), so serving a hit still never
calls prometheus-client. Counters are summed over every process that ever ran
(so a restarted worker does not make them go down); entries, bytes and breaker
state over live processes. Hit ratios are left to PromQL (``rate(hits) /
(rate(hits) + rate(misses))``): a ratio cannot be summed.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from ..engine.cache import Cache
from .points import LATENCY_BUCKETS, Family, InvalidationCounts, Point, invalidation_points, points

log = logging.getLogger("stratacache")
#: how a gauge of several processes is combined in multiprocess mode
_GAUGE_MODES = {"tier_entries": "livesum", "tier_bytes": "livesum", "tier_circuit_open": "livemax",
                "bus_connected": "livemin"}  # fmt: skip


def multiprocess_dir() -> str | None:
    """The directory of prometheus-client's multiprocess mode, or None when it is off."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class FleetExporter:
    """Copies the points of its caches into prometheus-client's multiprocess files.

    Args:
        prefix: metric name prefix.
        invalidations: invalidation counts to export beside the caches' counters.
        interval: seconds between copies (the lag of other workers' numbers in a scrape).
    """

    def __init__(self, prefix: str, invalidations: InvalidationCounts, interval: float = 1.0):
        self.prefix = prefix
        self.invalidations = invalidations
        self.interval = interval
        self._caches: weakref.WeakSet[Cache] = weakref.WeakSet()
        self._metrics: dict[str, Any] = {}
        self._last: dict[tuple[str, tuple[str, ...]], tuple[float, tuple[int, ...]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, cache: Cache) -> None:
        """Export ``cache``; starts the copying thread on first use."""
        with self._lock:
            self._caches.add(cache)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="stratacache-metrics", daemon=True
                )
                self._thread.start()

    def remove(self, cache: Cache) -> None:
        """Stop exporting ``cache`` (what it exported so far stays in the counters)."""
        with self._lock:
            self._caches.discard(cache)

    def stop(self) -> None:
        """Copy one last time and stop the thread."""
        self._stop.set()
        self.sync()

    def sync(self) -> None:
        """Copy every point now."""
        with self._lock:
            caches = list(self._caches)
            for cache in caches:
                for point in points(cache):
                    self._copy(point)
            for point in invalidation_points(self.invalidations):
                self._copy(point)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sync()
            except Exception:  # a stats dict changing size mid-read: the next tick catches up
                log.debug("stratacache: metrics copy failed", exc_info=True)

    def _copy(self, point: Point) -> None:
        spec = point.family
        metric = self._metric(spec)
        if metric is None:
            return
        child = metric.labels(*point.labels)
        key = (spec.name, point.labels)
        if spec.kind == "gauge":
            child.set(point.value)
            return
        last_value, last_buckets = self._last.get(key, (0.0, ()))
        if spec.kind == "counter":
            if point.value > last_value:
                child.inc(point.value - last_value)
            self._last[key] = (point.value, ())
            return
        # histogram: add the new per-bucket counts (prometheus-client keeps them per bucket too)
        previous = last_buckets or (0,) * len(point.buckets)
        for index, (now, before) in enumerate(zip(point.buckets, previous, strict=True)):
            if now > before:
                child._buckets[index].inc(now - before)
        if point.value > last_value:
            child._sum.inc(point.value - last_value)
        self._last[key] = (point.value, point.buckets)

    def _metric(self, spec: Family) -> Any:
        metric = self._metrics.get(spec.name)
        if metric is not None or spec.name in self._metrics:
            return metric
        name = f"{self.prefix}_{spec.name}"
        labels = list(spec.labels)
        if spec.kind == "counter":
            metric = Counter(name, spec.help, labels, registry=None)
        elif spec.kind == "histogram":
            metric = Histogram(name, spec.help, labels, registry=None, buckets=LATENCY_BUCKETS)
        elif spec.name in _GAUGE_MODES:
            mode = _GAUGE_MODES[spec.name]
            metric = Gauge(name, spec.help, labels, registry=None, multiprocess_mode=mode)  # type: ignore[arg-type]
        self._metrics[spec.name] = metric  # None: a per-process ratio, not exported here
        return metric

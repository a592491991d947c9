"""``CacheCollector``: a prometheus-client collector that reads caches at each scrape."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ..engine.cache import Cache
from .points import (
    FAMILIES,
    LATENCY_BUCKETS,
    InvalidationCounts,
    Point,
    invalidation_points,
    points,
)

PREFIX = "stratacache"


class CacheCollector:
    """Reads ``stats()`` (and tier latencies) of its caches at each scrape.

    Caches are held weakly: a cache that is garbage-collected disappears from the
    exposition instead of being kept alive by the registry.
    """

    def __init__(
        self,
        caches: Iterable[Cache] = (),
        *,
        prefix: str = PREFIX,
        invalidations: InvalidationCounts | None = None,
    ) -> None:
        self.prefix = prefix
        self.invalidations = invalidations
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
        """The fixed family names (lets a registry detect clashes up front)."""
        return [self._family(name) for name in FAMILIES]

    def collect(self) -> Iterator[Metric]:
        """One metric family per counter, with a sample per cache and tier/function."""
        yield from self.families(self.caches)

    def families(self, caches: Sequence[Cache]) -> Iterator[Metric]:
        """The metric families of ``caches``."""
        built: dict[str, Metric] = {name: self._family(name) for name in FAMILIES}
        samples: list[Point] = []
        for cache in caches:
            samples.extend(points(cache))
        if self.invalidations is not None:
            samples.extend(invalidation_points(self.invalidations))
        for point in samples:
            name = point.family.name
            family = built.get(name)
            if family is None:
                family = built[name] = self._family(name, point)
            if isinstance(family, HistogramMetricFamily):
                cumulative, running = [], 0
                for bound, count in zip(
                    (*LATENCY_BUCKETS, float("inf")), point.buckets, strict=True
                ):
                    running += count
                    cumulative.append((_le(bound), float(running)))
                family.add_metric(list(point.labels), cumulative, point.value)
            else:
                family.add_metric(list(point.labels), point.value)  # type: ignore[attr-defined]
        yield from built.values()

    def _family(self, name: str, point: Point | None = None) -> Metric:
        spec = point.family if point is not None else FAMILIES[name]
        full = f"{self.prefix}_{spec.name}"
        labels = list(spec.labels)
        if spec.kind == "counter":
            return CounterMetricFamily(full, spec.help, labels=labels)
        if spec.kind == "gauge":
            return GaugeMetricFamily(full, spec.help, labels=labels)
        return HistogramMetricFamily(full, spec.help, labels=labels)


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)

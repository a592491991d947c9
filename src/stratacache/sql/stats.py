"""Per-table counters of the query cache, and their Prometheus exposition."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any


@dataclasses.dataclass
class TableCounters:
    """What the query cache did for one table (a query counts for every table it reads)."""

    hits: int = 0
    misses: int = 0
    rows_served: int = 0
    invalidations: int = 0
    bypassed: int = 0

    def as_dict(self) -> dict[str, float]:
        """The counters and the hit rate (0.0 before any lookup)."""
        lookups = self.hits + self.misses
        return {**dataclasses.asdict(self), "hit_rate": self.hits / lookups if lookups else 0.0}


class QueryStats:
    """Counters per table plus statements left uncached, by reason. Plain integers, no locks."""

    def __init__(self) -> None:
        self.tables: dict[str, TableCounters] = {}
        self.uncached: dict[str, int] = {}

    def table(self, name: str) -> TableCounters:
        """The counters of ``name`` (created on first use)."""
        counters = self.tables.get(name)
        if counters is None:
            counters = self.tables[name] = TableCounters()
        return counters

    def served(self, tables: frozenset[str], rows: int, hit: bool) -> None:
        """Count one lookup of a query reading ``tables`` that returned ``rows`` rows."""
        for name in tables:
            counters = self.table(name)
            if hit:
                counters.hits += 1
                counters.rows_served += rows
            else:
                counters.misses += 1

    def skipped(self, reason: str) -> None:
        """Count one statement that asked to be cached and was not (``reason``: a short word)."""
        self.uncached[reason] = self.uncached.get(reason, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        """``{"tables": {name: counters}, "uncached": {reason: count}}``."""
        return {
            "tables": {name: c.as_dict() for name, c in sorted(self.tables.items())},
            "uncached": dict(self.uncached),
        }


class QueryCacheCollector:
    """A ``prometheus_client`` collector for one or more query caches (read at scrape time).

    ``REGISTRY.register(QueryCacheCollector(qc))`` exposes
    ``stratacache_sql_{hits,misses,rows_served,invalidations,bypassed}_total`` by
    ``database`` (the query cache's ``database_id``) and ``table``. Query caches of
    one database (two engines on it) are summed into one series: Prometheus takes
    one sample per label set.
    """

    _HELP = {
        "hits": "SELECT results served from the cache",
        "misses": "cacheable SELECTs sent to the database",
        "rows_served": "rows served from the cache",
        "invalidations": "committed writes that invalidated the table's cached results",
        "bypassed": "reads that skipped the cache inside a transaction that wrote the table",
    }

    def __init__(self, *query_caches: Any) -> None:
        self.query_caches = list(query_caches)

    def collect(self) -> Iterator[Any]:
        """Yield one counter family per measure (called by the registry on each scrape)."""
        from prometheus_client.core import CounterMetricFamily

        for field, help_text in self._HELP.items():
            family = CounterMetricFamily(
                f"stratacache_sql_{field}", help_text, labels=["database", "table"]
            )
            totals: dict[tuple[str, str], int] = {}
            for qc in self.query_caches:
                for name, counters in qc.counters.tables.items():
                    labels = (qc.database_id, name)
                    totals[labels] = totals.get(labels, 0) + getattr(counters, field)
            for labels, value in sorted(totals.items()):
                family.add_metric(list(labels), value)
            yield family


__all__ = ["QueryCacheCollector", "QueryStats", "TableCounters"]

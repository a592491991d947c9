"""``stratacache demo``: a realistic read workload without and with the tiers, with a report.

A Zipf-distributed key stream (a few hot products, a long tail) is read by
concurrent asyncio workers, first straight from a deliberately slow data
source (a SQLite table behind an artificial network delay), then through a
``@cache.cached`` function on memory + SQLite (with Redis between them when a
Redis URL is given). The report puts both side by side, then shows per-tier
hit rates, the loader calls saved and the time of each path, under load and
one request at a time.

Modules: ``workload`` (source, key stream, workers; shared with the
benchmarks), ``tracing`` (which path answered a request), ``runner`` (the
three passes and the checks before them), ``report`` (the tables).
"""

from __future__ import annotations

import asyncio
import sys

from .report import render
from .runner import DemoConfig, DemoResult, check_config, run_demo
from .tracing import JOINED, LOADER, TracedTier
from .workload import SlowSource


def main(config: DemoConfig) -> DemoResult:
    """Run the demo and print the report on stdout."""
    result = asyncio.run(run_demo(config))
    sys.stdout.write(render(result))
    return result


__all__ = [
    "JOINED",
    "LOADER",
    "DemoConfig",
    "DemoResult",
    "SlowSource",
    "TracedTier",
    "check_config",
    "main",
    "render",
    "run_demo",
]

"""The demo's report: no cache against the cache, per tier, per path."""

from __future__ import annotations

import os
from collections.abc import Sequence

from .runner import DemoResult
from .tracing import JOINED, LOADER
from .workload import PathStats


def render(result: DemoResult) -> str:
    """Side by side without and with the cache, then hit rates, loader calls and per-path times."""
    cfg = result.config
    lines = [
        f"stratacache demo: {cfg.keys:,} keys (Zipf s={cfg.zipf}), {cfg.concurrency} concurrent "
        f"workers, source delay {cfg.delay_ms:g} ms + SQLite read, seed {result.seed}",
        f"tiers: {' -> '.join(result.tiers)}",
        "",
    ]
    lines += _side_by_side(result)
    lines += ["", *_tier_table(result), "", *_loader_lines(result), "", *_path_table(result)]
    return "\n".join(lines) + "\n"


def _side_by_side(result: DemoResult) -> list[str]:
    base, latency = result.baseline, result.baseline_latency
    if base is None:
        return []
    every = PathStats()
    for stats in result.paths.values():
        every.latencies.extend(stats.latencies)
    rows = [
        ("requests", f"{base.requests:,}", f"{result.requests:,}"),
        ("seconds", f"{base.elapsed:.1f}", f"{result.elapsed:.1f}"),
        ("requests/s", f"{base.rate:,.0f}", f"{result.rate:,.0f}"),
        ("p50 us", f"{latency.percentile(0.5):,.1f}", f"{every.percentile(0.5):,.1f}"),
        ("p99 us", f"{latency.percentile(0.99):,.1f}", f"{every.percentile(0.99):,.1f}"),
    ]
    lines = [f"{'':<12} {'no cache':>12} {'stratacache':>12}"]
    lines += [f"{label:<12} {a:>12} {b:>12}" for label, a, b in rows]
    speedup = result.speedup
    if speedup is not None:
        lines.append(
            f"speed-up: {speedup:.1f}x the requests/s of no cache "
            "(same seed, same source; the cached run starts cold)"
        )
    return lines


def _tier_table(result: DemoResult) -> list[str]:
    lines = [
        f"{'tier':<10} {'hits':>10} {'misses':>10} {'hit rate':>9} {'sets':>9} {'evictions':>9}"
    ]
    for name, data in result.stats["tiers"].items():
        lines.append(
            f"{name:<10} {data['hits']:>10,} {data['misses']:>10,} {data['hit_rate']:>9.1%} "
            f"{data['sets']:>9,} {data.get('evictions', 0):>9,}"
        )
    return lines


def _loader_lines(result: DemoResult) -> list[str]:
    cfg = result.config
    saved = result.saved
    share = saved / result.requests if result.requests else 0.0
    joined = len(result.paths[JOINED].latencies)
    refreshes = result.stats["engine"]["background_refreshes"]
    return [
        f"loader calls: {result.loader_calls:,} for {result.requests:,} requests "
        f"-> {saved:,} calls saved ({share:.1%}), "
        f"~{saved * cfg.delay_ms / 1000:,.1f} s of source time avoided",
        f"  {joined:,} requests joined a read or load already in flight (the '{_label(JOINED)}' "
        f"row), {refreshes:,} background (early) refreshes",
    ]


def _path_table(result: DemoResult) -> list[str]:
    labels = _path_labels(result.tiers)
    lines = [
        f"{'':<22} {'':>10} {'':>7} {'under load':^21} {'one at a time':^21}",
        f"{'path':<22} {'requests':>10} {'share':>7} {'p50 us':>10} {'p99 us':>10} "
        f"{'p50 us':>10} {'p99 us':>10}",
    ]
    for name, stats in result.paths.items():
        count = len(stats.latencies)
        if not count and name == JOINED:
            continue
        alone = result.alone.get(name, PathStats())
        solo = (
            f"{alone.percentile(0.50):>10,.1f} {alone.percentile(0.99):>10,.1f}"
            if alone.latencies
            else f"{'-':>10} {'-':>10}"
        )
        lines.append(
            f"{labels.get(name, name):<22} {count:>10,} "
            f"{count / result.requests if result.requests else 0:>7.1%} "
            f"{stats.percentile(0.50):>10,.1f} {stats.percentile(0.99):>10,.1f} {solo}"
        )
    cores = os.cpu_count() or 1
    lines += [
        f"under load: {result.config.concurrency} workers share one event loop "
        f"({cores} CPU core{'s' if cores != 1 else ''}); a request's time includes waiting",
        "for the loop while other requests run, which inflates the lower paths most.",
        "one at a time: the same paths measured after the run with a single caller,",
        "i.e. what each path itself costs.",
    ]
    return lines


def _label(name: str) -> str:
    return _path_labels(())[name]


def _path_labels(tiers: Sequence[str]) -> dict[str, str]:
    labels = {name: f"L{i + 1} hit ({name})" for i, name in enumerate(tiers)}
    labels[LOADER] = "miss -> loader"
    labels[JOINED] = "joined in-flight call"
    return labels

"""Shared helpers of the benchmarks: interleaved repeats, medians, percentiles, ratio tables.

Every benchmark runs its candidates *side by side in one process*: each repeat
runs every candidate once, in a rotating order, so machine noise (frequency
scaling, another process) is spread over all of them. A candidate's number is
the median over repeats; ratios are taken between medians. Absolute times
depend on the machine; the ratios are what the README quotes.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Sample = Callable[[], float]  # runs one measurement, returns ns per operation (or a latency)
AsyncSample = Callable[[], Awaitable[float]]


@dataclass
class Result:
    """All measurements of one candidate; ``median`` is what gets reported."""

    name: str
    samples: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")


def time_loop(fn: Callable[[Any], Any], args: Sequence[Any], rounds: int) -> float:
    """ns per call of ``fn(arg)`` over ``rounds`` passes through ``args``."""
    start = time.perf_counter_ns()
    for _ in range(rounds):
        for a in args:
            fn(a)
    return (time.perf_counter_ns() - start) / (rounds * len(args))


async def atime_loop(
    fn: Callable[[Any], Awaitable[Any]], args: Sequence[Any], rounds: int
) -> float:
    """ns per awaited call of ``fn(arg)`` over ``rounds`` passes through ``args``."""
    start = time.perf_counter_ns()
    for _ in range(rounds):
        for a in args:
            await fn(a)
    return (time.perf_counter_ns() - start) / (rounds * len(args))


def empty_loop(args: Sequence[Any], rounds: int) -> float:
    """ns per iteration of the bare loop, subtracted from every sync loop measurement."""
    start = time.perf_counter_ns()
    for _ in range(rounds):
        for _a in args:
            pass
    return (time.perf_counter_ns() - start) / (rounds * len(args))


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank ``q``-quantile."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))
    return ordered[index]


def run_interleaved(candidates: dict[str, Sample], repeats: int) -> dict[str, Result]:
    """Run every candidate once per repeat in rotating order; GC is off while measuring."""
    results = {name: Result(name) for name in candidates}
    names = list(candidates)
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            gc.disable()
            try:
                results[name].samples.append(candidates[name]())
            finally:
                gc.enable()
    return results


async def arun_interleaved(candidates: dict[str, AsyncSample], repeats: int) -> dict[str, Result]:
    """``run_interleaved`` for coroutine measurements."""
    results = {name: Result(name) for name in candidates}
    names = list(candidates)
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            gc.collect()
            gc.disable()
            try:
                results[name].samples.append(await candidates[name]())
            finally:
                gc.enable()
            await asyncio.sleep(0)
    return results


def fmt_ns(ns: float) -> str:
    """A duration in the unit that reads best."""
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} us"
    return f"{ns:.0f} ns"


def print_table(
    title: str,
    results: dict[str, Result],
    *,
    subject: str,
    unit: str = "per call",
    formatter: Callable[[float], str] = fmt_ns,
    higher_is_better: bool = False,
    out: Any = None,
) -> dict[str, float]:
    """Print medians and ``subject / other`` ratios; returns those ratios by name."""
    out = out or sys.stdout
    base = results[subject].median
    repeats = len(results[subject].samples)
    print(f"\n{title}  (median of {repeats} interleaved repeats, {unit})", file=out)
    width = max(len(n) for n in results) + 2
    del higher_is_better  # the ratio is always stratacache / this; the title says which way is good
    print(f"  {'candidate':<{width}} {'median':>12} {'stratacache / this':>20}", file=out)
    ratios: dict[str, float] = {}
    for name, result in results.items():
        ratio = base / result.median if result.median else float("nan")
        ratios[name] = ratio
        mark = "  <- subject" if name == subject else ""
        note = f"  ({result.note})" if result.note else ""
        print(
            f"  {name:<{width}} {formatter(result.median):>12} {ratio:>19.2f}x{mark}{note}",
            file=out,
        )
    return ratios


def verdict(label: str, value: float, target: float, *, at_most: bool = True) -> str:
    """One line saying whether a ratio meets its target."""
    ok = value <= target if at_most else value >= target
    sign = "<=" if at_most else ">="
    return f"  {label}: {value:.2f}x (target {sign} {target}x) {'OK' if ok else 'MISSED'}"

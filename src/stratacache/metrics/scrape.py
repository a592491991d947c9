"""Reading a running process's stratacache counters back from its Prometheus exposition.

What ``stratacache stats --metrics-url`` shows: the per-namespace tier and function
counters of any process that exports them (``stratacache.metrics.start_http_server``),
parsed from the text format and laid out as a table.
"""

from __future__ import annotations

from typing import Any


def scrape_stats(metrics_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """Per-namespace tier and function counters parsed from a Prometheus exposition."""
    from urllib.request import urlopen

    with urlopen(metrics_url, timeout=timeout) as response:
        text = response.read().decode("utf-8")
    return parse_exposition(text)


def parse_exposition(text: str) -> dict[str, Any]:
    """``{namespace: {"tiers": {tier: counters}, "functions": {fn: counters}}}``."""
    from prometheus_client.parser import text_string_to_metric_families

    data: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            for kind, label in (("tier", "tier"), ("function", "function")):
                head = f"stratacache_{kind}_"
                if not name.startswith(head) or label not in sample.labels:
                    continue
                field = name[len(head) :].removesuffix("_total").replace("hit_ratio", "hit_rate")
                if field.endswith("_created"):
                    continue
                ns = data.setdefault(sample.labels.get("namespace", ""), {})
                counters = ns.setdefault(kind + "s", {}).setdefault(sample.labels[label], {})
                counters[field] = sample.value
    return data


def format_stats(data: dict[str, Any]) -> str:
    """A table per namespace: hits, misses and hit rate per tier and per function."""
    lines: list[str] = []
    for namespace, groups in sorted(data.items()):
        lines.append(f"namespace {namespace}")
        for kind in ("tiers", "functions"):
            rows = groups.get(kind, {})
            if not rows:
                continue
            width = max(12, *(len(n) for n in rows))
            lines.append(f"  {kind[:-1]:<{width}} {'hits':>12} {'misses':>12} {'hit rate':>9}")
            for name, c in rows.items():
                hits, misses = c.get("hits", 0), c.get("misses", 0)
                # multiprocess mode exports no ratio (it cannot be summed): compute it
                rate = c.get("hit_rate", hits / (hits + misses) if hits + misses else 0.0)
                lines.append(f"  {name:<{width}} {hits:>12,.0f} {misses:>12,.0f} {rate:>9.1%}")
    if not lines:
        lines.append("no stratacache metrics found")
    return "\n".join(lines) + "\n"


__all__ = ["format_stats", "parse_exposition", "scrape_stats"]

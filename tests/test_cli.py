"""The ``stratacache`` command on real tiers: demo, invalidate, clear, stats."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry

import stratacache as sc
from stratacache.cli import build_cli, parse_exposition
from stratacache.demo import LOADER, DemoConfig, DemoResult, render, run_demo
from stratacache.metrics import start_http_server

SRC = Path(__file__).resolve().parents[1] / "src"


def invoke(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(build_cli(), list(args), input=input, catch_exceptions=False)


def small_demo(**overrides: Any) -> DemoConfig:
    options: dict[str, Any] = dict(
        keys=100, requests=600, seconds=120, concurrency=8, delay_ms=1, memory_size=20, seed=1
    )
    options.update(overrides)
    return DemoConfig(progress=False, **options)


def test_demo_command_prints_the_table(tmp_path: Path) -> None:
    """`stratacache demo` on memory + SQLite prints per-tier rows, loader calls and paths."""
    result = invoke(
        "demo", "--keys", "100", "--requests", "500", "--delay-ms", "1", "--memory-size", "20",
        "--concurrency", "4", "--no-redis", "--quiet", "--sqlite", str(tmp_path / "c.db"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "tiers: memory -> sql" in out
    assert re.search(r"^memory\s+[\d,]+\s+[\d,]+\s+[\d.]+%", out, re.M)
    assert re.search(r"^sql\s+[\d,]+\s+[\d,]+\s+[\d.]+%", out, re.M)
    match = re.search(r"loader calls: ([\d,]+) for ([\d,]+) requests -> ([\d,]+) calls saved", out)
    assert match is not None, out
    calls, requests, saved = (int(g.replace(",", "")) for g in match.groups())
    assert requests == 500 and calls + saved == requests
    for label in ("L1 hit (memory)", "miss -> loader"):
        assert label in out


def check_counts(result: DemoResult) -> None:
    """Every request is on exactly one path; the loader ran once per counted load."""
    counts = result.path_counts()
    assert sum(counts.values()) == result.requests
    function = next(iter(result.stats["functions"].values()))
    assert function["hits"] + function["misses"] == result.requests
    assert result.loader_calls == result.stats["engine"]["loads"]
    assert counts[LOADER] <= result.loader_calls <= result.requests
    assert counts[LOADER] > 0 and counts[result.tiers[0]] > 0
    top = result.stats["tiers"][result.tiers[0]]
    assert top["hits"] == counts[result.tiers[0]]  # the table's L1 row and L1 path agree
    assert result.saved == result.requests - result.loader_calls
    assert "loader calls:" in render(result)


def test_demo_counts_add_up_without_redis() -> None:
    """Memory + SQLite: the paths add up to the requests and the loader ran per load."""
    result = asyncio.run(run_demo(small_demo()))
    assert result.tiers == ["memory", "sql"]
    assert result.requests == 600
    check_counts(result)


def test_demo_counts_add_up_with_redis(redis_url: str) -> None:
    """With Redis, the demo runs memory -> redis -> sql and the paths still add up."""
    result = asyncio.run(run_demo(small_demo(redis_url=redis_url)))
    assert result.tiers == ["memory", "redis", "sql"]
    check_counts(result)


def test_invalidate_removes_keys_tags_and_prefixes(redis_url: str, tmp_path: Path) -> None:
    """`stratacache invalidate` reaches Redis and SQLite for keys, tags and prefixes."""
    sqlite = str(tmp_path / "cache.db")
    namespace = "cli" + uuid.uuid4().hex[:8]

    async def fill() -> None:
        tiers = [sc.RedisTier(url=redis_url), sc.SQLTier(url=f"sqlite:///{sqlite}")]
        async with sc.Cache(tiers, namespace=namespace) as cache:
            await cache.set("a", 1)
            await cache.set("b", 2, tags=["t"])
            await cache.set("report:1", 3)
            await cache.set("keep", 4)

    async def remaining() -> dict[str, Any]:
        for tier in (sc.RedisTier(url=redis_url), sc.SQLTier(url=f"sqlite:///{sqlite}")):
            async with sc.Cache([tier], namespace=namespace) as cache:
                found = await cache.get_many(["a", "b", "report:1", "keep"])
                assert found == {"keep": 4}, (tier.name, found)
        return found

    asyncio.run(fill())
    result = invoke(
        "invalidate", "-n", namespace, "--key", "a", "--tag", "t", "--prefix", "report:",
        "--redis-url", redis_url, "--sqlite", sqlite,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1 key(s), 1 tag(s), 1 prefix(es)" in result.stdout
    asyncio.run(remaining())


def test_invalidate_needs_something_to_invalidate(tmp_path: Path) -> None:
    """Without --key/--tag/--prefix the command refuses with a usage error."""
    result = invoke("invalidate", "-n", "x", "--sqlite", str(tmp_path / "c.db"))
    assert result.exit_code == 2
    assert "--key, --tag or --prefix" in result.output


def test_invalidate_needs_a_tier(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any tier option (and no $REDIS_URL) the command says which options exist."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    result = invoke("invalidate", "-n", "x", "--key", "a")
    assert result.exit_code == 2
    assert "--redis-url" in result.output


def test_clear_asks_and_clears(tmp_path: Path) -> None:
    """`stratacache clear` asks first; with --yes it empties the namespace only."""
    sqlite = str(tmp_path / "cache.db")

    async def fill(namespace: str) -> None:
        async with sc.Cache([sc.SQLTier(url=f"sqlite:///{sqlite}")], namespace=namespace) as c:
            await c.set("k", namespace)

    async def value(namespace: str) -> Any:
        async with sc.Cache([sc.SQLTier(url=f"sqlite:///{sqlite}")], namespace=namespace) as c:
            return await c.get("k")

    asyncio.run(fill("one"))
    asyncio.run(fill("two"))
    refused = invoke("clear", "-n", "one", "--sqlite", sqlite, input="n\n")
    assert refused.exit_code == 1 and asyncio.run(value("one")) == "one"
    result = invoke("clear", "-n", "one", "--sqlite", sqlite, "--yes")
    assert result.exit_code == 0, result.output
    assert asyncio.run(value("one")) is None
    assert asyncio.run(value("two")) == "two"


def test_stats_reads_a_running_process() -> None:
    """`stratacache stats` prints the tier and function counters served on /metrics."""

    async def exercise() -> sc.Cache:
        cache = sc.Cache([sc.MemoryTier()], namespace="clistats")

        @cache.cached(ttl=60)
        async def double(x: int) -> int:
            return 2 * x

        for x in (1, 1, 1, 2):
            await double(x)
        return cache

    cache = asyncio.run(exercise())
    registry = CollectorRegistry()
    server, thread = start_http_server(0, caches=[cache], registry=registry)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        table = invoke("stats", "--metrics-url", url)
        assert table.exit_code == 0, table.output
        assert re.search(r"memory\s+2\s+2\s+50\.0%", table.stdout), table.stdout
        as_json = invoke("stats", "--metrics-url", url, "--json")
        assert '"clistats"' in as_json.stdout
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_stats_reports_an_unreachable_url() -> None:
    """An unreachable metrics URL is a clear error, not a traceback."""
    result = CliRunner().invoke(build_cli(), ["stats", "--metrics-url", "http://127.0.0.1:9/x"])
    assert result.exit_code == 1
    assert "cannot read" in result.output


def test_parse_exposition_ignores_other_metrics() -> None:
    """Only stratacache families end up in the parsed stats."""
    text = (
        "# TYPE other_total counter\nother_total 3\n"
        "# TYPE stratacache_tier_hits counter\n"
        'stratacache_tier_hits_total{namespace="n",tier="memory"} 5\n'
    )
    assert parse_exposition(text) == {"n": {"tiers": {"memory": {"hits": 5.0}}}}


def test_main_without_click_says_how_to_install() -> None:
    """With click unavailable, `stratacache` exits 2 with the pip command, not a traceback."""
    code = "import sys; sys.modules['click'] = None\nfrom stratacache.cli import main\nmain([])"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(SRC), "PATH": ""},
        timeout=60,
    )
    assert proc.returncode == 2
    assert "pip install 'stratacache[cli]'" in proc.stderr
    assert "Traceback" not in proc.stderr

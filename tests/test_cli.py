"""The ``stratacache`` command on real tiers: demo, invalidate, clear, stats."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from tests.conftest import free_port
from tests.waiting import wait_until

import stratacache as sc
from stratacache.cli import build_cli, format_stats, parse_exposition
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
    (tmp_path / "c.db").touch()
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


# -- commands against a running application (subprocesses, real uvicorn, real Redis) -----------
ADMIN_TOKEN = "cli-admin-token-0123456789"
READ_TOKEN = "cli-read-token-0123456789"
STRATACACHE = Path(sys.executable).with_name("stratacache")


@dataclass
class LiveApp:
    """A running admin API over memory + Redis and how to run the CLI against it."""

    url: str
    redis_url: str

    def run(self, *args: str, token: str | None = ADMIN_TOKEN, **env: str) -> Any:
        environ = {**os.environ, "STRATACACHE_ADMIN_URL": self.url, **env}
        environ.pop("STRATACACHE_ADMIN_TOKEN", None)
        if token is not None:
            environ["STRATACACHE_ADMIN_TOKEN"] = token
        return subprocess.run(
            [str(STRATACACHE), *args], capture_output=True, text=True, env=environ, timeout=60
        )

    def seed(self, entries: dict[str, Any], tags: dict[str, list[str]] | None = None) -> None:
        with sc.Cache([sc.RedisTier(url=self.redis_url)], namespace="live").sync as sync:
            for key, value in entries.items():
                sync.set(key, value, tags=(tags or {}).get(key, []))

    def remaining(self, keys: list[str]) -> dict[str, Any]:
        with sc.Cache([sc.RedisTier(url=self.redis_url)], namespace="live").sync as sync:
            return sync.get_many(keys)


@pytest.fixture
def live(redis_url: str) -> Iterator[LiveApp]:
    """An application's admin API served by uvicorn on loopback, with one warmer."""
    from tests.admin.serving import serve

    from stratacache.admin import AdminAPI

    cache = sc.Cache([sc.MemoryTier(), sc.RedisTier(url=redis_url)], namespace="live")

    @cache.cached(ttl=60, key="sq:{x}", warm=[1, 2, 3])
    async def square(x: int) -> int:
        return x * x

    api = AdminAPI(cache, token=ADMIN_TOKEN, read_token=READ_TOKEN, audit=[])
    with serve(api) as port:
        yield LiveApp(f"http://127.0.0.1:{port}", redis_url)


def one_line_error(proc: Any) -> str:
    """The process failed with exactly one line on stderr and no traceback."""
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_stats_through_the_admin_api(live: LiveApp) -> None:
    """`stratacache stats` prints tiers and breakers; --json is the /stats document."""
    table = live.run("stats", token=READ_TOKEN)
    assert table.returncode == 0, table.stderr
    assert re.search(r"memory\s+0\s+0\s+0\.0%\s+0\s+closed", table.stdout), table.stdout
    data = json.loads(live.run("stats", "--json").stdout)
    assert data["namespace"] == "live" and set(data["tiers"]) == {"memory", "redis"}


def test_keys_pages_and_all(live: LiveApp) -> None:
    """`stratacache keys` prints one page (and says there is more); --all prints every key."""
    live.seed({f"user:{i}": i for i in range(12)} | {"other": 0})
    page = live.run("keys", "--prefix", "user:", "--limit", "5", token=READ_TOKEN)
    assert page.returncode == 0 and len(page.stdout.split()) >= 5
    every = live.run("keys", "--prefix", "user:", "--limit", "5", "--all", token=READ_TOKEN)
    assert sorted(set(every.stdout.split())) == sorted(f"user:{i}" for i in range(12))


def test_inspect_shows_tiers_and_value_needs_admin(live: LiveApp) -> None:
    """`stratacache inspect KEY` shows each tier; --value with the read token is refused."""
    live.seed({"user:1": {"n": 1}}, tags={"user:1": ["org:1"]})
    shown = live.run("inspect", "user:1", "--value")
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"redis\s+fresh\s+expires in [\d.]+s .* tags \['org:1'\]", shown.stdout)
    assert 'value: {"n": 1}' in shown.stdout
    refused = live.run("inspect", "user:1", "--value", token=READ_TOKEN)
    assert "HTTP 403" in one_line_error(refused)
    missing = live.run("inspect", "nothing")
    assert "HTTP 404" in one_line_error(missing)


def test_invalidate_through_the_admin_api(live: LiveApp) -> None:
    """`stratacache invalidate` with keys, tags and two prefixes removes exactly those."""
    live.seed({"a": 1, "b": 2, "r:1": 3, "s:1": 4, "keep": 5}, tags={"b": ["t"]})
    result = live.run(
        "invalidate", "--key", "a", "--tag", "t", "--prefix", "r:", "--prefix", "s:",
        "--reason", "test",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "1 key(s), 1 tag(s), 2 prefix(es)" in result.stdout
    assert live.remaining(["a", "b", "r:1", "s:1", "keep"]) == {"keep": 5}


def test_warm_runs_every_warmer_with_progress(live: LiveApp) -> None:
    """`stratacache warm` runs the registered warmers and fills Redis."""
    result = live.run("warm")
    assert result.returncode == 0, result.stderr
    assert "warmed 3 entries with 1 warmer(s), 0 failed" in result.stdout
    assert "warming" in result.stderr
    assert live.remaining(["sq:2", "sq:3"]) == {"sq:2": 4, "sq:3": 9}


def test_flush_needs_yes(live: LiveApp) -> None:
    """`stratacache flush` without --yes (and no terminal) aborts; with --yes it empties."""
    live.seed({"a": 1})
    aborted = live.run("flush")
    assert "aborted" in aborted.stderr.lower() and aborted.returncode == 1
    assert live.remaining(["a"]) == {"a": 1}
    done = live.run("flush", "--yes")
    assert done.returncode == 0 and "flushed namespace 'live'" in done.stdout
    assert live.remaining(["a"]) == {}


@pytest.mark.parametrize(
    "args,env,expected",
    [
        (["stats"], {"STRATACACHE_ADMIN_TOKEN": "wrong-token-0123456789"}, "HTTP 401"),
        (["flush", "--yes"], {"STRATACACHE_ADMIN_TOKEN": READ_TOKEN}, "HTTP 403"),
        (["keys"], {"STRATACACHE_ADMIN_URL": "http://127.0.0.1:9"}, "cannot reach"),
        (["keys"], {"STRATACACHE_ADMIN_URL": "ftp://nowhere"}, "admin URL must be"),
        (["invalidate", "--key", "a", "-n", "x", "--admin-url", ""], {"REDIS_URL": "nope://x"}, ""),
        (["stats", "--admin-url", "", "--metrics-url", "not a url"], {}, "cannot read"),
        (["warm", "--warmer", "nope"], {}, "unknown warmer"),
    ],
    ids=[
        "wrong-token",
        "read-token-flush",
        "unreachable",
        "bad-scheme",
        "bad-redis-url",
        "bad-metrics-url",
        "unknown-warmer",
    ],
)
def test_errors_are_one_line_and_non_zero(
    live: LiveApp, args: list[str], env: dict[str, str], expected: str
) -> None:
    """Every failure ends in one clear line on stderr and a non-zero exit code."""
    token = env.pop("STRATACACHE_ADMIN_TOKEN", ADMIN_TOKEN)
    line = one_line_error(live.run(*args, token=token, **env))
    assert expected in line


def test_invalidate_with_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    """A --sqlite path that does not exist is a usage error; no file appears."""
    missing = tmp_path / "missing.db"
    proc = subprocess.run(
        [str(STRATACACHE), "invalidate", "-n", "x", "--key", "a", "--sqlite", str(missing)],
        capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("STRATACACHE_")},
    )  # fmt: skip
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not missing.exists()


def test_admin_serve_runs_the_api_and_refuses_without_token(redis_url: str) -> None:
    """`stratacache admin serve` serves the API for a namespace; without a token it refuses."""
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("STRATACACHE_")}
    refused = subprocess.run(
        [str(STRATACACHE), "admin", "serve", "-n", "srv", "--redis-url", redis_url],
        capture_output=True, text=True, timeout=60, env=base_env,
    )  # fmt: skip
    assert "token" in one_line_error(refused)
    port = free_port()
    env = {**base_env, "STRATACACHE_ADMIN_TOKEN": ADMIN_TOKEN}
    server = subprocess.Popen(
        [str(STRATACACHE), "admin", "serve", "-n", "srv", "--redis-url", redis_url,
         "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _health(url), what="admin serve to answer")
        stats = subprocess.run(
            [str(STRATACACHE), "stats", "--json", "--admin-url", url],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert json.loads(stats.stdout)["namespace"] == "srv"
        assert json.loads(stats.stdout)["bus"]["configured"] is True
    finally:
        server.terminate()
        server.wait(30)


def _health(url: str) -> bool:
    from urllib.request import urlopen

    try:
        with urlopen(f"{url}/health", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_format_stats_computes_missing_hit_rates() -> None:
    """A multiprocess scrape has no ratio gauges: the table computes them from the counters."""
    text = (
        "# TYPE stratacache_tier_hits counter\n"
        'stratacache_tier_hits_total{namespace="n",tier="memory"} 3\n'
        "# TYPE stratacache_tier_misses counter\n"
        'stratacache_tier_misses_total{namespace="n",tier="memory"} 1\n'
    )
    assert re.search(r"memory\s+3\s+1\s+75\.0%", format_stats(parse_exposition(text)))

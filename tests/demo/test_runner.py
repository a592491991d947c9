"""``stratacache demo`` as a user runs it: the report's structure, its error paths, its cleanup."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from tests.conftest import free_port

from stratacache.core.errors import ConfigError
from stratacache.demo import JOINED, LOADER, DemoConfig, render, run_demo

SMALL = ["--keys", "200", "--requests", "800", "--delay-ms", "1", "--memory-size", "50"]
SMALL += ["--concurrency", "8", "--seed", "7", "--quiet"]


def run_cli(*args: str, redis_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, "-m", "stratacache.cli", "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_demo_prints_no_cache_and_cache_side_by_side(tmp_path: Path) -> None:
    """The report compares no cache with the cache, then tiers, loader calls and paths."""
    proc = run_cli(*SMALL, "--sqlite", str(tmp_path / "cache.db"))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"^\s+no cache\s+stratacache$", out, re.M), out
    for row in ("requests", "seconds", "requests/s", "p50 us", "p99 us"):
        assert re.search(rf"^{re.escape(row)}\s+[\d,.]+\s+[\d,.]+$", out, re.M), row
    assert re.search(r"^speed-up: [\d.]+x the requests/s of no cache", out, re.M), out
    assert re.search(r"^memory\s+[\d,]+\s+[\d,]+\s+[\d.]+%", out, re.M)
    assert re.search(r"^sql\s+[\d,]+\s+[\d,]+\s+[\d.]+%", out, re.M)
    assert "under load" in out and "one at a time" in out
    for label in ("L1 hit (memory)", "L2 hit (sql)", "miss -> loader"):
        assert re.search(rf"^{re.escape(label)}\s+[\d,]+\s+[\d.]+%(\s+[\d,.]+){{4}}$", out, re.M)


def test_joined_line_agrees_with_the_joined_row(tmp_path: Path) -> None:
    """'N requests joined ...' counts exactly the requests on the joined row of the path table."""
    config = DemoConfig(
        keys=50, requests=1500, concurrency=16, delay_ms=2, memory_size=10, seed=3, progress=False
    )
    result = asyncio.run(run_demo(config))
    out = render(result)
    joined = len(result.paths[JOINED].latencies)
    line = re.search(r"^\s+([\d,]+) requests joined a read or load already in flight", out, re.M)
    assert line is not None and number(line.group(1)) == joined
    if joined:
        row = re.search(r"^joined in-flight call\s+([\d,]+)", out, re.M)
        assert row is not None and number(row.group(1)) == joined
    assert sum(result.path_counts().values()) == result.requests
    assert len(result.paths[LOADER].latencies) <= result.loader_calls


def test_every_path_is_also_timed_alone() -> None:
    """After the run each tier and the loader are measured one request at a time."""
    config = DemoConfig(keys=100, requests=400, delay_ms=1, memory_size=20, seed=1, progress=False)
    result = asyncio.run(run_demo(config))
    for name in (*result.tiers, LOADER):
        assert result.alone[name].latencies, name
    assert not result.alone[JOINED].latencies
    assert result.baseline is not None and result.baseline.requests == 400
    assert result.speedup is not None


def test_redis_run_leaves_no_key_behind(redis_url: str) -> None:
    """With Redis, nothing of the demo's namespace stays in Redis (epoch and counters included)."""
    proc = run_cli(*SMALL, redis_url=redis_url)
    assert proc.returncode == 0, proc.stderr
    assert "tiers: memory -> redis -> sql" in proc.stdout
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.keys("*") == []
    finally:
        client.close()


def bad_inputs(tmp_path: Path) -> list[tuple[list[str], str]]:
    (tmp_path / "a-folder").mkdir()
    port = free_port()
    return [
        (["--sqlite", str(tmp_path / "missing" / "cache.db")], "does not exist"),
        (["--sqlite", str(tmp_path / "missing" / "deeper" / "c.db")], "does not exist"),
        (["--redis-url", f"redis://127.0.0.1:{port}/0"], "cannot reach Redis"),
        (["--redis-url", f"redis://:secret@127.0.0.1:{port}/0"], "cannot reach Redis"),
        (["--redis-url", "http://127.0.0.1:6379"], "not a Redis URL"),
        (["--keys", "0"], "at least 1"),
        (["--requests", "0"], "at least 1"),
        (["--seconds", "0"], "must be positive"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path: Path, case: int) -> None:
    """An unusable option ends with one clear line on stderr and exit status 1, no traceback."""
    args, expected = bad_inputs(tmp_path)[case]
    proc = run_cli(*SMALL, *args)
    assert proc.returncode == 1, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert expected in lines[0] and "Traceback" not in proc.stderr
    assert "secret" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("name", "expected"),
    [("nowhere/cache.db", "does not exist"), ("a-folder", "is a folder")],
)
def test_bad_sqlite_path_is_refused_before_anything_runs(
    tmp_path: Path, name: str, expected: str
) -> None:
    """``run_demo`` raises ``ConfigError`` for an unusable SQLite path and creates nothing."""
    (tmp_path / "a-folder").mkdir()
    before = sorted(tmp_path.rglob("*"))
    config = DemoConfig(sqlite_path=str(tmp_path / name), requests=10, progress=False)
    with pytest.raises(ConfigError, match=expected):
        asyncio.run(run_demo(config))
    assert sorted(tmp_path.rglob("*")) == before

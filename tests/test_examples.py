"""Every script in examples/ runs to completion (exit 0), with and without Redis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


def run_example(script: Path, redis_url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    if redis_url:
        env["REDIS_URL"] = redis_url
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
        timeout=120,
    )


def test_there_are_sync_and_async_examples() -> None:
    """examples/ holds at least the sync and the async script."""
    names = {p.name for p in EXAMPLES}
    assert {"sync_example.py", "async_example.py"} <= names


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_without_redis(script: Path) -> None:
    """The example exits 0 on the tiers it has without Redis."""
    proc = run_example(script, None)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs_with_redis(script: Path, redis_url: str) -> None:
    """The example exits 0 with REDIS_URL pointing at a real Redis."""
    proc = run_example(script, redis_url)
    assert proc.returncode == 0, proc.stdout + proc.stderr

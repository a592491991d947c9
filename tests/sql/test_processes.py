"""Writes committed in another OS process invalidate this process's cached results (Redis + bus)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.sql.models import CACHED, ExecutionCounter
from tests.waiting import wait_until

import stratacache as sc
from stratacache.sql import QueryCache

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(params=["memory", "redis"])
def shared_cache(request: pytest.FixtureRequest, redis_url: str) -> Iterator[sc.Cache]:
    """A memory tier (plus a Redis tier with the "redis" param) kept coherent by the Redis bus."""
    levels: list[sc.Tier] = [sc.MemoryTier()]
    if request.param == "redis":
        levels.append(sc.RedisTier(url=redis_url))
    cache = sc.Cache(levels, namespace="qcproc", bus=sc.RedisBus(redis_url))
    cache.mode = request.param  # type: ignore[attr-defined]
    yield cache
    cache.sync.close()


def test_a_write_in_another_process_invalidates_here(
    engine: sa.Engine,
    db_url: str,
    redis_url: str,
    shared_cache: sc.Cache,
    counter: ExecutionCounter,
) -> None:
    """After a second process commits a write through its QueryCache, this one reads fresh rows."""
    qc = QueryCache(shared_cache, engine)

    def names() -> list[str]:
        with engine.connect() as conn:
            return list(conn.execute(CACHED).scalars())

    assert names() == ["atlas", "novel", "kite"]
    assert counter.delta(names) == (["atlas", "novel", "kite"], 0)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).with_name("writer_process.py")),
            db_url,
            redis_url,
            shared_cache.mode,
        ],  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    wait_until(lambda: names()[2] == "yoyo", what="the other process's invalidation")
    assert qc.stats()["tables"]["products"]["misses"] == 2
    qc.detach()

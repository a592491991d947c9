"""RedisTier against a real 3-primary Redis Cluster (slow: starts its own servers)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from stratacache.testing import TierConformance
from stratacache.tiers.redis import RedisTier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster_url(redis_factory: Callable[..., Any], wait_until: Callable[..., None]) -> str:
    """Start three cluster-enabled redis-servers, join them, wait for cluster_state:ok."""
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.fail("redis-cli not found; install it: apt-get install redis-server")
    nodes = [
        redis_factory("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
        for _ in range(3)
    ]
    addresses = [f"127.0.0.1:{n.port}" for n in nodes]
    subprocess.run(
        [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=60,
    )

    def ready() -> bool:
        for node in nodes:
            client = redis.Redis(port=node.port)
            try:
                if client.cluster("info")["cluster_state"] != "ok":  # type: ignore[index]
                    return False
            finally:
                client.close()
        return True

    wait_until(ready, timeout=30, what="cluster_state:ok")
    return f"redis://{addresses[0]}/0"


class TestRedisClusterTier(TierConformance):
    """The conformance suite on a cluster RedisTier."""

    @pytest.fixture
    def raw_client(self, cluster_url: str) -> Iterator[redis.RedisCluster]:
        client = redis.RedisCluster.from_url(cluster_url)
        yield client
        client.close()

    @pytest.fixture
    def tier(self, cluster_url: str, raw_client: redis.RedisCluster) -> RedisTier:
        raw_client.flushall()
        return RedisTier(
            cluster_url, cluster=True, ttl=3600, socket_timeout=5
        )  # behaviour, not speed

    @pytest.fixture
    def tier_twin(self, cluster_url: str) -> RedisTier:
        return RedisTier(cluster_url, cluster=True, socket_timeout=5)

    @pytest.fixture
    def write_raw(self, raw_client: redis.RedisCluster) -> Callable[[str, bytes], Any]:
        return raw_client.set

    @pytest.fixture
    def physical_ttl(self, raw_client: redis.RedisCluster) -> Callable[[str], float | None]:
        def ttl(key: str) -> float | None:
            ms = int(raw_client.pttl(key))  # type: ignore[arg-type]
            return None if ms < 0 else ms / 1000

        return ttl

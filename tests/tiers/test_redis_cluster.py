"""RedisTier against a real Redis Cluster: 3 primaries, 3 replicas (slow: the shared fixture)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from tests.topologies import Cluster

from stratacache.testing import TierConformance
from stratacache.tiers.redis import RedisTier

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster_url(cluster_factory: Callable[[], Cluster]) -> str:
    """A 6-node cluster (3 primaries, 3 replicas: ``tests.topologies``) of the module's own."""
    return cluster_factory().url


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

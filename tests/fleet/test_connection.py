"""``RedisConnection``: one setting for where Redis is; nothing connects in a constructor."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis

import stratacache as sc
from stratacache.fleet.connection import LazyClient, is_cluster


@pytest.mark.parametrize(
    ("options", "mode"),
    [
        ({}, "single"),
        ({"cluster": True}, "cluster"),
        ({"startup_nodes": ["127.0.0.1:7001", ("127.0.0.1", 7002)]}, "cluster"),
        ({"sentinels": [("127.0.0.1", 26379)], "service_name": "main"}, "sentinel"),
    ],
)
def test_mode_follows_the_setting(options: dict[str, Any], mode: str) -> None:
    """A URL is one Redis; startup nodes or ``cluster`` a Cluster; sentinels a Sentinel set."""
    assert sc.RedisConnection("redis://127.0.0.1:6379/0", **options).mode == mode


@pytest.mark.parametrize(
    "options",
    [
        {"url": "http://x"},
        {"sentinels": [("127.0.0.1", 26379)]},
        {"startup_nodes": ["no-port"]},
        {"startup_nodes": [("h", "p")]},
        {"cluster": True, "sentinels": [("127.0.0.1", 1)], "service_name": "main"},
    ],
)
def test_bad_settings_are_config_errors(options: dict[str, Any]) -> None:
    """A bad URL, sentinels without a service name, a bad node: ``ConfigError`` at once."""
    with pytest.raises(sc.ConfigError):
        sc.RedisConnection(**options)


def test_repr_hides_the_password() -> None:
    """The password never shows in logs."""
    assert "secret" not in repr(sc.RedisConnection("redis://:secret@127.0.0.1:6379/0"))


def test_cluster_clients_are_built_without_connecting() -> None:
    """Cluster clients (asyncio and blocking) are built with every node down; the blocking
    one fails on use with a redis ``ConnectionError`` and tries again later."""
    connection = sc.RedisConnection("redis://127.0.0.1:1/0", startup_nodes=["127.0.0.1:2"])
    assert is_cluster(connection.client(asynchronous=True))
    blocking = connection.client(asynchronous=False, socket_connect_timeout=0.1)
    assert isinstance(blocking, LazyClient) and not blocking.built
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        blocking.get("k")
    with pytest.raises(redis.ConnectionError):  # remembered for a moment: no new attempt
        blocking.get("k")
    assert time.monotonic() - started < 5


def test_tier_on_an_unreachable_cluster_answers_from_the_loader() -> None:
    """A cache on a Cluster tier whose nodes are all down starts and answers, sync and async."""
    tier = sc.RedisTier(
        url="redis://127.0.0.1:1/0", cluster=True, socket_timeout=0.1, socket_connect_timeout=0.1
    )
    cache = sc.Cache(tiers=[sc.MemoryTier(), tier], namespace="down")
    assert cache.sync.get_or_set("k", lambda: "v") == "v"
    cache.sync.close()


def test_the_tier_shares_its_connection_with_the_fleet_services() -> None:
    """Bus, lock and hot keys built from a tier use the tier's own ``RedisConnection``."""
    tier = sc.RedisTier(sentinels=[("127.0.0.1", 1)], service_name="main")
    assert tier.fleet_bus().connection is tier.connection
    assert tier.fleet_lock().connection is tier.connection
    assert tier.hot_keys().connection is tier.connection

"""Real Redis topologies for the slow tests: a 6-node Cluster and a Sentinel set, on free ports.

``cluster_factory()`` starts six cluster-enabled redis-servers and joins them as
3 primaries + 3 replicas (``redis-cli --cluster create … --cluster-replicas 1``);
``sentinel_factory()`` starts a primary, a replica and 3 sentinels
(``redis-server <conf> --sentinel``). Every process is stopped by pid at the end
of the session (``redis_factory`` and ``SentinelProcess.stop``).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
from tests.conftest import RedisProcess, _pings, free_port
from tests.waiting import wait_until

NODE_TIMEOUT_MS = 1000  # cluster-node-timeout: a dead primary is replaced ~1-2 s later
DOWN_AFTER_MS = 1000  # sentinel down-after-milliseconds
SERVICE = "main"


@dataclass
class Cluster:
    """Six nodes; ``url`` names the first (a startup node), ``nodes`` lists them all."""

    nodes: list[RedisProcess]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{n.port}" for n in self.nodes]

    def node(self, port: int) -> RedisProcess:
        return next(n for n in self.nodes if n.port == port)

    def primaries(self) -> list[RedisProcess]:
        """The nodes that are primaries now (asked of a live node)."""
        for node in self.nodes:
            if node.proc is None:
                continue
            client = redis.Redis(port=node.port, socket_timeout=1)
            try:
                lines = client.execute_command("CLUSTER", "NODES").decode().splitlines()
            except redis.RedisError:
                continue
            finally:
                client.close()
            ports = []
            for line in lines:
                parts = line.split()
                if "master" in parts[2] and "fail" not in parts[2]:
                    ports.append(int(parts[1].split(":")[1].split("@")[0]))
            return [self.node(p) for p in ports]
        raise AssertionError("no cluster node answers")

    def healthy(self) -> bool:
        """cluster_state:ok on every running node, and 3 primaries each with a replica."""
        for node in self.nodes:
            if node.proc is None:
                continue
            client = redis.Redis(port=node.port, socket_timeout=1)
            try:
                info = client.cluster("info")
                if info["cluster_state"] != "ok":  # type: ignore[index]
                    return False
            except redis.RedisError:
                return False
            finally:
                client.close()
        return True


def start_cluster(redis_factory: Callable[..., RedisProcess]) -> Cluster:
    cli = shutil.which("redis-cli")
    if cli is None:
        pytest.fail("redis-cli not found; install it: apt-get install redis-server")
    options = ("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
    timeout = ("--cluster-node-timeout", str(NODE_TIMEOUT_MS))
    nodes = [redis_factory(*options, *timeout) for _ in range(6)]
    cluster = Cluster(nodes)
    subprocess.run(
        [
            cli,
            "--cluster",
            "create",
            *cluster.addresses,
            "--cluster-replicas",
            "1",
            "--cluster-yes",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=60,
    )
    wait_until(cluster.healthy, timeout=30, what="cluster_state:ok")
    wait_until(lambda: len(cluster.primaries()) == 3, timeout=30, what="3 primaries")
    # A replica is listed (and can take over) once it has replicated something: write a key
    # to every primary, then wait until each slot range names its replica.
    client = redis.RedisCluster(host="127.0.0.1", port=nodes[0].port)
    try:
        for i in range(64):
            client.set(f"__warm__:{i}", b"1")

        def replicated() -> bool:
            ranges = client.cluster_slots()
            return len(ranges) == 3 and all(len(r["replicas"]) == 1 for r in ranges.values())

        wait_until(replicated, timeout=30, what="every primary's replica in sync")
    finally:
        client.close()
    return cluster


@dataclass
class SentinelProcess:
    """One ``redis-server <conf> --sentinel`` process."""

    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, primary_port: int) -> SentinelProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.workdir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        binary = shutil.which("redis-server") or "redis-server"
        self.proc = subprocess.Popen(
            [binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(lambda: _pings(self.port), what=f"sentinel on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@dataclass
class SentinelSet:
    """A primary, a replica and three sentinels watching them as ``SERVICE``."""

    primary: RedisProcess
    replica: RedisProcess
    sentinels: list[SentinelProcess]
    service_name: str = SERVICE

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", s.port) for s in self.sentinels]

    def master_port(self) -> int | None:
        """The primary's port as a sentinel names it now."""
        for sentinel in self.sentinels:
            client = redis.Redis(port=sentinel.port, socket_timeout=1)
            try:
                found = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
                if found:
                    return int(found[1])
            except redis.RedisError:
                continue
            finally:
                client.close()
        return None

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()


def start_sentinel_set(
    redis_factory: Callable[..., RedisProcess], tmp: pytest.TempPathFactory
) -> SentinelSet:
    primary = redis_factory()
    replica = redis_factory("--replicaof", "127.0.0.1", str(primary.port))

    def synced() -> bool:
        client = redis.Redis(port=replica.port)
        try:
            return bool(client.info("replication").get("master_link_status") == "up")
        finally:
            client.close()

    wait_until(synced, timeout=20, what="replica in sync")
    sentinels = []
    for _ in range(3):
        port = free_port()
        sentinels.append(SentinelProcess(port, tmp.mktemp(f"sentinel{port}")).start(primary.port))
    found = SentinelSet(primary, replica, sentinels)

    def watching() -> bool:
        for sentinel in sentinels:
            client = redis.Redis(port=sentinel.port)
            try:
                fields: Any = client.sentinel_master(SERVICE)
                if int(fields.get("num-other-sentinels", 0)) < 2:
                    return False
                if int(fields.get("num-slaves", 0)) < 1:
                    return False
            except redis.RedisError:
                return False
            finally:
                client.close()
        return True

    wait_until(watching, timeout=30, what="sentinels know each other and the replica")
    return found


@pytest.fixture(scope="session")
def cluster_factory(redis_factory: Callable[..., RedisProcess]) -> Callable[[], Cluster]:
    """Start a fresh 6-node cluster (for tests that kill nodes)."""
    return lambda: start_cluster(redis_factory)


@pytest.fixture(scope="session")
def cluster6(cluster_factory: Callable[[], Cluster]) -> Cluster:
    """A 6-node cluster shared by the session's tests that do not kill nodes."""
    return cluster_factory()


@pytest.fixture
def sentinel_set(
    redis_factory: Callable[..., RedisProcess], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SentinelSet]:
    """A Sentinel set of the test's own (a failover changes it for good)."""
    found = start_sentinel_set(redis_factory, tmp_path_factory)
    yield found
    found.stop()
    found.primary.stop()
    found.replica.stop()


__all__ = ["Cluster", "SentinelSet", "cluster6", "cluster_factory", "sentinel_set"]

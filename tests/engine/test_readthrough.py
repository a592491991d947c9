"""Read-through (both drivers): what a miss sends on the wire, and the shared decisions."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import RedisProcess

import stratacache as sc
from stratacache.engine import signals


class Wire:
    """The commands clients send to a redis-server, read through ``MONITOR``.

    Commands a Lua script runs inside the server are left out: each line counted is
    one command a client sent (a pipeline's commands count one each).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self._sock = socket.create_connection(("127.0.0.1", port))
        self._sock.sendall(b"MONITOR\r\n")
        self._file = self._sock.makefile("rb")
        assert self._file.readline().startswith(b"+OK")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._file:
            line = raw.decode("utf-8", "replace")
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()

    def mark(self) -> list[str]:
        """The commands (lower-case names) sent since the last mark, in order."""
        token = uuid.uuid4().hex
        with socket.create_connection(("127.0.0.1", self.port)) as probe:
            probe.sendall(f"ECHO {token}\r\n".encode())
            probe.recv(64)
        with self._seen:
            assert self._seen.wait_for(lambda: any(token in line for line in self.lines), 30)
            lines, self.lines = self.lines, []
        commands = []
        for line in lines:
            if token in line:
                break
            if " lua]" in line or '"' not in line:
                continue
            commands.append(line.split('"')[1].lower())
        return commands

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def server(redis_factory: Callable[..., RedisProcess]) -> RedisProcess:
    """A redis-server of this test's own: nobody else's commands on its wire."""
    return redis_factory()


@pytest.fixture
def wire(server: RedisProcess) -> Iterator[Wire]:
    watcher = Wire(server.port)
    yield watcher
    watcher.close()


def _tiers(url: str, tmp_path: Path, sql: bool) -> list[Any]:
    tiers: list[Any] = [sc.MemoryTier(), sc.RedisTier(url)]
    if sql:
        tiers.append(sc.SQLTier(f"sqlite:///{tmp_path / 'wire.db'}"))
    return tiers


#: a full miss's Redis commands: read, lease, leased set; over SQL the read's lease (taken
#: before the SQL read) is taken again after the SQL lease, since leases go bottom-up
WIRE = {False: ["get", "mget", "evalsha"], True: ["get", "mget", "mget", "evalsha"]}


@pytest.mark.parametrize("sql", [False, True], ids=["memory-redis", "memory-redis-sql"])
async def test_a_full_miss_redis_round_trips(
    server: RedisProcess, wire: Wire, tmp_path: Path, sql: bool
) -> None:
    """Async: a miss in every tier costs GET, one lease, SET on Redis (three round trips;
    four over SQL: the load leases Redis again after the SQL tier)."""
    tiers = _tiers(server.url, tmp_path, sql)
    async with sc.Cache(tiers, namespace="wire", bus=False, lock=False) as cache:
        await cache.get_or_set("warm", lambda: 0)  # connections, scripts: not counted
        wire.mark()
        assert await cache.get_or_set("k", lambda: 42) == 42
        sent = wire.mark()
    assert sent == WIRE[sql], sent


@pytest.mark.parametrize("sql", [False, True], ids=["memory-redis", "memory-redis-sql"])
def test_a_full_miss_redis_round_trips_sync(
    server: RedisProcess, wire: Wire, tmp_path: Path, sql: bool
) -> None:
    """cache.sync: the same round trips, from the blocking driver."""
    cache = sc.Cache(_tiers(server.url, tmp_path, sql), namespace="wire", bus=False, lock=False)
    with cache.sync as facade:
        facade.get_or_set("warm", lambda: 0)
        wire.mark()
        assert facade.get_or_set("k", lambda: 42) == 42
    sent = wire.mark()
    assert sent == WIRE[sql], sent


def test_sync_xfetch_uses_the_injected_draw() -> None:
    """cache.sync refreshes early on the same XFetch draw as the async client."""
    clock = sc.ManualClock()
    cache = sc.Cache([sc.MemoryTier()], namespace="xf", clock=clock, default_ttl=10)
    cache.readthrough.random = lambda: 0.01  # -ln = 4.6: early within 4.6 * cost
    early: list[str] = []
    with (
        cache.sync as facade,
        signals.early_refresh.connected_to(lambda _s, key: early.append(key)),
    ):
        entry = sc.Entry("old", created=clock.time(), expires=clock.time() + 10, cost=1.0)
        facade.io.write(cache.full_key("k"), entry, None, clock.time())
        clock.advance(6)
        assert facade.get_or_set("k", lambda: "new") == "old"
    assert early == [cache.full_key("k")] and cache.counters.early_refreshes == 1


def test_sync_refresh_skips_a_key_loaded_since_it_was_read() -> None:
    """The newer-load guard: no background refresh of an entry older than the last load."""
    clock = sc.ManualClock()
    cache = sc.Cache([sc.MemoryTier()], namespace="guard", clock=clock)
    with cache.sync as facade:
        facade.get_or_set("k", lambda: 1)
        old = sc.Entry(0, created=clock.time() - 1, expires=clock.time() + 10)
        policy = cache.entry_policy()
        started = facade.loading.refresh_in_background(
            cache.full_key("k"), lambda: 2, policy, (), previous=old
        )
    assert started is False and cache.counters.background_refreshes == 0

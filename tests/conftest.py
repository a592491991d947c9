"""Shared fixtures: throwaway redis-server processes, PostgreSQL and SQLite URLs."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.waiting import wait_until

#: the Cluster and Sentinel fixtures (``cluster6``, ``cluster_factory``, ``sentinel_set``)
pytest_plugins = ["tests.topologies"]

INSTALL_REDIS = "redis-server not found; install it: apt-get install redis-server"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A free TCP port whose cluster bus port (+10000) is free and valid too."""
    rng = random.Random()
    while True:
        port = rng.randrange(20_000, 55_000)
        if _bindable(port) and _bindable(port + 10_000):
            return port


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class RedisProcess:
    """One redis-server child process on ``port``; ``stop`` and ``start`` reuse the port."""

    port: int
    workdir: Path
    extra: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(INSTALL_REDIS)
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.workdir), *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: _pings(self.port), what=f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        """Kill the server (SIGKILL: no graceful shutdown) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(name="wait_until", scope="session")
def wait_until_fixture() -> Callable[..., None]:
    """``wait_until(predicate, timeout=10.0, what="")``: poll until true, else fail the test."""
    return wait_until


@pytest.fixture(scope="session")
def redis_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RedisProcess]]:
    """Start extra redis-server processes (``factory(*extra_args)``); all stopped at the end."""
    started: list[RedisProcess] = []

    def factory(*extra: str) -> RedisProcess:
        port = free_port()
        server = RedisProcess(port, tmp_path_factory.mktemp(f"redis{port}"), tuple(extra))
        started.append(server)
        return server.start()

    yield factory
    for server in started:
        server.stop()


@pytest.fixture
def pausable_redis(redis_factory: Callable[..., RedisProcess]) -> Iterator[RedisProcess]:
    """A redis-server of the test's own, resumed (if paused) and stopped after it."""
    from tests.outage import resume

    server = redis_factory()
    yield server
    resume(server)
    server.stop()


@pytest.fixture(scope="session")
def redis_server(redis_factory: Callable[..., RedisProcess]) -> str:
    """The URL (db 0) of a throwaway redis-server shared by the session."""
    return redis_factory().url


_db_counter = iter(range(1, 10**9))


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """A URL of a freshly flushed database on the session's redis-server."""
    import redis

    db = next(_db_counter) % 16
    url = redis_server.rsplit("/", 1)[0] + f"/{db}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


@pytest.fixture(scope="session")
def _postgres_engine() -> Iterator[object]:
    """An engine on the local PostgreSQL; fails with a hint when it is not reachable."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(POSTGRES_URL)
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT 1"))
    except Exception as exc:
        engine.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {POSTGRES_URL} ({exc!r}); install it: "
            "apt-get install postgresql, trust auth for 127.0.0.1 and createdb test"
        )
    yield engine
    engine.dispose()


@pytest.fixture
def postgres_url(_postgres_engine: object) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a schema private to the test (dropped after)."""
    import sqlalchemy

    engine = _postgres_engine
    assert isinstance(engine, sqlalchemy.Engine)
    schema = f"sc_test_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file private to the test."""
    return f"sqlite:///{tmp_path / 'cache.db'}"

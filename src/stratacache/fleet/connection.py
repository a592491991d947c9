"""``RedisConnection``: one setting for where Redis is, shared by the tier and the fleet services.

One Redis (a URL), a Cluster (a URL and/or a list of startup nodes) or a
Sentinel set (service name and sentinels): the tier, the invalidation bus,
client-side tracking, the fleet lock and hot keys all build their clients from
one ``RedisConnection``, so they cannot disagree on where Redis is.

Nothing connects in a constructor: asyncio clients connect on their first
command, and the blocking Cluster client (whose redis-py constructor connects)
is built on first use behind ``LazyClient``, which turns a failed build into a
``redis.ConnectionError`` and tries again on the next use. So a process starts
while a node (even the URL's startup node) is down; the callers' tiers and
buses retry in the background.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from ..core.errors import ConfigError

#: connection options a node client may copy from a pool or a cluster node
NODE_OPTIONS = frozenset(
    "db username password client_name protocol socket_timeout socket_connect_timeout "  # noqa: SIM905
    "socket_keepalive socket_keepalive_options encoding encoding_errors decode_responses "
    "ssl_keyfile ssl_certfile ssl_cert_reqs ssl_ca_certs ssl_ca_data ssl_check_hostname "
    "ssl_min_version ssl_ciphers credential_provider".split()
)
_REBUILD_AFTER = 0.5  # seconds a failed lazy build is remembered before trying again


class RedisConnection:
    """Where Redis is, and how to reach it; builds (never connects) redis-py clients.

    Args:
        url: ``redis://`` / ``rediss://`` URL: the server, or in Cluster mode the first
            startup node; credentials, TLS and database apply to every node.
        cluster: Redis Cluster (implied by ``startup_nodes``).
        startup_nodes: ``["host:port", ...]`` or ``[(host, port), ...]``: more Cluster nodes
            to discover the cluster from, so that start-up survives any one being down.
        sentinels: ``[(host, port), ...]`` of Redis Sentinels; needs ``service_name``.
        service_name: the Sentinel master name.
        socket_timeout / socket_connect_timeout: seconds, for every client built here
            (each service may override them).

    Raises:
        ConfigError: an unusable URL, sentinels without ``service_name``, a bad node.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        cluster: bool = False,
        startup_nodes: Sequence[str | tuple[str, int]] | None = None,
        sentinels: Sequence[tuple[str, int]] | None = None,
        service_name: str | None = None,
        socket_timeout: float = 0.5,
        socket_connect_timeout: float = 0.25,
    ) -> None:
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ConfigError(
                f"RedisConnection url must be redis://, rediss:// or unix://: {url!r}"
            )
        if sentinels and not service_name:
            raise ConfigError("RedisConnection with sentinels needs service_name")
        if sentinels and (cluster or startup_nodes):
            raise ConfigError("RedisConnection is either a Cluster or a Sentinel set, not both")
        self.url = url
        self.startup_nodes = [_node(n) for n in startup_nodes or ()]
        self.cluster = cluster or bool(self.startup_nodes)
        self.sentinels = [_node(s) for s in sentinels or ()]
        self.service_name = service_name
        self.socket_timeout = socket_timeout
        self.socket_connect_timeout = socket_connect_timeout

    @property
    def mode(self) -> str:
        """``"cluster"``, ``"sentinel"`` or ``"single"``."""
        if self.cluster:
            return "cluster"
        return "sentinel" if self.sentinels else "single"

    def same_server(self, other: RedisConnection) -> bool:
        """Do both connections reach the same Redis (one Redis, Cluster or Sentinel set)?"""
        if other is self:
            return True
        if self.sentinels or other.sentinels:
            return self.service_name == other.service_name and bool(
                set(self.sentinels) & set(other.sentinels)
            )
        if self.cluster != other.cluster:
            return False
        mine = {_where(self.url), *self.startup_nodes}
        return bool(mine & {_where(other.url), *other.startup_nodes})

    def __repr__(self) -> str:
        where = self.service_name if self.sentinels else _redacted(self.url)
        return f"RedisConnection({self.mode}: {where!s})"

    # -- clients ---------------------------------------------------------------------------
    def client(
        self,
        *,
        asynchronous: bool = True,
        retry: Any = None,
        pool_timeout: float | None = None,
        **options: Any,
    ) -> Any:
        """A new client (asyncio or blocking) for this Redis; no connection is made yet.

        ``options`` are redis-py connection options (``socket_timeout``, ``max_connections``
        ...) over this connection's defaults. The blocking Cluster client is a ``LazyClient``.
        """
        opts: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            **options,
        }
        mod: Any = aredis if asynchronous else redis
        if retry is None:
            # one quick retry of a dropped connection; never of a timeout, which would
            # double the wait of every call to a hung server
            kind: Any = AsyncRetry if asynchronous else Retry
            retry = kind(
                ExponentialBackoff(cap=0.05, base=0.005),
                1,
                supported_errors=(redis.exceptions.ConnectionError,),
            )
        if self.cluster:
            return self._cluster_client(mod, asynchronous, retry, opts)
        if self.sentinels:
            sentinel = self.sentinel(asynchronous=asynchronous)
            return sentinel.master_for(
                self.service_name, retry=retry, **_url_options(self.url), **opts
            )
        if pool_timeout is None:
            pool = mod.ConnectionPool.from_url(self.url, retry=retry, **opts)
        else:
            pool = mod.BlockingConnectionPool.from_url(
                self.url, timeout=pool_timeout, retry=retry, **opts
            )
        return mod.Redis(connection_pool=pool)

    def _cluster_client(
        self, mod: Any, asynchronous: bool, retry: Any, opts: dict[str, Any]
    ) -> Any:
        opts = {k: v for k, v in opts.items() if k != "max_connections" or asynchronous}
        nodes = [(h, p) for h, p in self.startup_nodes]
        parts = urlsplit(self.url)
        if parts.hostname:
            nodes.insert(0, (parts.hostname, parts.port or 6379))
        startup = [mod.cluster.ClusterNode(h, p) for h, p in dict.fromkeys(nodes)]
        extra = _url_options(self.url)
        extra.pop("db", None)

        def build() -> Any:
            return mod.RedisCluster(startup_nodes=startup, retry=retry, **extra, **opts)

        if asynchronous:
            return build()  # connects on its first command
        return LazyClient(build)  # redis-py's blocking cluster client connects in __init__

    def sentinel(self, *, asynchronous: bool = True) -> Any:
        """A Sentinel client of this set (asks the sentinels where the primary is)."""
        mod: Any = aredis if asynchronous else redis
        timeouts = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
        }
        return mod.sentinel.Sentinel(self.sentinels, sentinel_kwargs=timeouts, **timeouts)

    def node_client(
        self, host: str, port: int, *, asynchronous: bool = True, **options: Any
    ) -> Any:
        """A plain client on one node (a Cluster node, the Sentinel primary), with our credentials."""
        opts: dict[str, Any] = {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            **_url_options(self.url),
            **options,
        }
        if self.cluster:
            opts.pop("db", None)
        mod: Any = aredis if asynchronous else redis
        return mod.Redis(host=host, port=port, **opts)


def node_client_like(base: Any, host: str, port: int, **options: Any) -> aredis.Redis:
    """An asyncio client on ``host:port`` with the connection options of client ``base``."""
    kwargs: dict[str, Any] = {}
    pool = getattr(base, "connection_pool", None)
    if pool is not None:
        kwargs = dict(pool.connection_kwargs)
    else:  # a RedisCluster: every node shares its connection options
        nodes = getattr(getattr(base, "nodes_manager", None), "connection_kwargs", None)
        kwargs = dict(nodes or {})
    kwargs = {k: v for k, v in kwargs.items() if k in NODE_OPTIONS}
    if kwargs.get("protocol") is None:
        kwargs.pop("protocol", None)
    return aredis.Redis(host=host, port=port, **{**kwargs, **options})


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a redis-py Cluster client (asyncio or blocking, lazy or not)."""
    return isinstance(client, aredis.RedisCluster | redis.RedisCluster | LazyClient)


class LazyClient:
    """A blocking client built on first use; a failed build is a ``redis.ConnectionError``.

    redis-py's blocking ``RedisCluster`` connects in its constructor; built eagerly it would
    make a process fail to start (or its first call raise ``RedisClusterException``) while a
    startup node is down. Behind this proxy the build is retried on a later use instead.
    """

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._client: Any = None
        self._failed_at = -1e9
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        """Whether the client exists (it has connected at least once)."""
        return self._client is not None

    def resolve(self) -> Any:
        """The client, built now if needed (raises ``redis.ConnectionError`` if it cannot be)."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                if time.monotonic() - self._failed_at < _REBUILD_AFTER:
                    raise redis.ConnectionError(f"Redis Cluster unreachable: {self._error!r}")
                try:
                    self._client = self._build()
                except (RedisClusterException, redis.RedisError, OSError) as exc:
                    self._failed_at, self._error = time.monotonic(), exc
                    raise redis.ConnectionError(f"Redis Cluster unreachable: {exc!r}") from exc
            return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.resolve(), name)


def _node(node: str | tuple[str, int]) -> tuple[str, int]:
    if isinstance(node, str):
        host, sep, port = node.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"a Redis node is 'host:port', not {node!r}")
        return host.strip("[]"), int(port)
    try:
        name, number = node
        return str(name), int(number)
    except (TypeError, ValueError):
        raise ConfigError(f"a Redis node is (host, port), not {node!r}") from None


def _where(url: str) -> tuple[str, int]:
    """The server a URL names: ``(host, port)``, or ``(socket path, 0)`` for ``unix://``."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path, 0
    return parts.hostname or "localhost", parts.port or 6379


def _url_options(url: str) -> dict[str, Any]:
    """Credentials, TLS and database of ``url``, for clients built per node."""
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    if parts.username:
        options["username"] = parts.username
    if parts.password:
        options["password"] = parts.password
    if parts.scheme == "rediss":
        options["ssl"] = True
    path = parts.path.lstrip("/")
    if path.isdigit():
        options["db"] = int(path)
    return options


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@")
    return url


__all__ = ["LazyClient", "RedisConnection", "is_cluster", "node_client_like"]

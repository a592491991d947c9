"""``RedisTier``'s arguments, checked and turned into where Redis is and how to reach it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..core.codec import check_value_size
from ..core.durations import check_duration, check_optional
from ..core.errors import ConfigError
from ..fleet.connection import RedisConnection
from ._redis_client import check_url


@dataclass(frozen=True, slots=True)
class TierSettings:
    """A ``RedisTier``'s checked settings (a ``ConfigError`` names any bad argument)."""

    connection: RedisConnection
    #: keyword arguments of every client the tier builds
    client_options: dict[str, Any]
    ttl: float | None
    max_value_size: int
    socket_timeout: float
    pool_timeout: float | None


def tier_settings(
    url: str,
    *,
    ttl: float | None,
    max_connections: int,
    socket_timeout: float,
    socket_connect_timeout: float,
    pool_timeout: float | None,
    cluster: bool,
    sentinels: Sequence[tuple[str, int]] | None,
    service_name: str | None,
    max_value_size: int,
    startup_nodes: Sequence[str | tuple[str, int]] | None,
    connection: RedisConnection | None,
) -> TierSettings:
    """Check ``RedisTier``'s arguments; the connection is ``connection`` or built from ``url``."""
    ttl = check_optional("RedisTier ttl", ttl)
    max_value_size = check_value_size("RedisTier max_value_size", max_value_size)
    socket_timeout = check_duration("RedisTier socket_timeout", socket_timeout)
    socket_connect_timeout = check_duration(
        "RedisTier socket_connect_timeout", socket_connect_timeout
    )
    pool_timeout = check_optional("RedisTier pool_timeout", pool_timeout)
    if sentinels and not service_name:
        raise ConfigError("RedisTier with sentinels needs service_name")
    if connection is None:
        check_url(url)
        connection = RedisConnection(
            url,
            cluster=cluster,
            startup_nodes=startup_nodes,
            sentinels=sentinels,
            service_name=service_name,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
        )
    if max_connections < 1:
        raise ConfigError(f"RedisTier max_connections must be >= 1, not {max_connections!r}")
    options = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_connect_timeout,
        "max_connections": max_connections,
    }
    return TierSettings(connection, options, ttl, max_value_size, socket_timeout, pool_timeout)

"""Parity: the async client and ``cache.sync`` give the same results, counters, signals and
audit records for every public operation, over memory, Redis and SQL tiers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import stratacache as sc
from stratacache.engine import signals

#: signals whose timing belongs to a background thread, not to the operation
_UNTIMED = {"stratacache.bus_state", "stratacache.breaker_state"}


def _loader_many(keys: list[str]) -> dict[str, Any]:
    return {k: f"many-{k}" for k in keys}


async def _async_loader_many(keys: list[str]) -> dict[str, Any]:
    return {k: f"amany-{k}" for k in keys}


async def _async_loader() -> str:
    return "async-one"


#: (operation, args, kwargs): every public data operation of both clients, in one story
SCRIPT: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("get", ("a",), {}),
    ("set", ("a", {"v": 1}), {"ttl": 60, "tags": ["t1"]}),
    ("get", ("a",), {}),
    ("get_entry", ("a",), {}),
    ("get", ("a",), {"default": "dflt", "tags": ["t1"]}),
    ("get_many", (["a", "b"],), {}),
    ("set_many", ({"b": 2, "c": 3},), {"ttl": 30, "tags": ["t2"]}),
    ("get_many", (["a", "b", "c", "x"],), {}),
    ("get_or_set", ("d", lambda: 4), {"ttl": 20, "tags": ["t1"]}),
    ("get_or_set", ("d", lambda: 5), {}),
    ("get_or_set", ("e", lambda: None), {"condition": lambda v: v is not None}),
    ("get_or_set", ("e", lambda: 6), {"unless": lambda v: v == 6}),
    ("exists", ("e",), {}),
    ("add", ("f", 1), {}),
    ("add", ("f", 2), {}),
    ("incr", ("n", 5), {}),
    ("decr", ("n", 2), {}),
    ("touch", ("a",), {"ttl": 100}),
    ("ttl", ("a",), {}),
    ("exists", ("a",), {}),
    ("exists", ("zz",), {}),
    ("get_or_set_many", (["g", "h", "a"], _loader_many), {"ttl": 50}),
    ("get_or_set_many", (["i", "j", "g"], _async_loader_many), {"tags": ["t2"]}),
    ("get_or_set", ("l", _async_loader), {"tags": ["t2"]}),
    ("get_many", (["i", "j", "l"],), {}),
    ("invalidate", (), {"tags": ["t1"], "reason": "tagged", "actor": "me"}),
    ("get", ("a",), {}),
    ("get", ("d",), {}),
    ("invalidate", (), {"prefix": "b", "reason": "prefixed"}),
    ("get", ("b",), {}),
    ("delete", ("c",), {}),
    ("invalidate", (), {"keys": ["g"], "actor": "someone"}),
    ("clear", (), {"reason": "wipe", "actor": "admin"}),
    ("get", ("h",), {}),
    ("set", ("z", [1, 2]), {}),
    ("flush_namespace", (), {"reason": "flush", "actor": "ops"}),
    ("get", ("z",), {}),
]


class Record:
    """Everything one cache told the world: results, signals, audit records."""

    def __init__(self, cache: sc.Cache) -> None:
        self.prefix = cache.namespace + ":"
        self.events: list[tuple[str, Any]] = []
        self._receivers: list[tuple[Any, Callable[..., None]]] = []
        for name, signal in signals.signals.items():
            if name in _UNTIMED:
                continue

            def receive(_sender: object, _name: str = name, **payload: Any) -> None:
                self.events.append((_name, self.clean(payload)))

            signal.connect(receive, sender=cache, weak=False)
            self._receivers.append((signal, receive))
        cache.audit_hooks.append(lambda message: self.events.append(("audit", self.audit(message))))

    def clean(self, value: Any) -> Any:
        """Strip what differs by construction: namespaces, durations, identities."""
        if isinstance(value, dict):
            return {k: self.clean(v) for k, v in value.items() if k != "duration"}
        if isinstance(value, (list, tuple)):
            return type(value)(self.clean(v) for v in value)
        if isinstance(value, str):
            return value.replace(self.prefix, "NS:")
        if isinstance(value, BaseException):
            return type(value).__name__
        if isinstance(value, sc.Entry):
            return ("entry", self.clean(value.value), value.tags, value.expires)
        return value

    def audit(self, message: Any) -> Any:
        fields = ("keys", "tags", "prefixes", "reason", "actor", "clear", "generation")
        return {f: self.clean(getattr(message, f)) for f in fields}

    def note(self, operation: str, result: Any) -> None:
        self.events.append(("result:" + operation, self.clean(result)))

    def close(self) -> None:
        for signal, receiver in self._receivers:
            signal.disconnect(receiver)


def _tiers(kind: str, redis_url: str, folder: Path) -> list[Any]:
    tiers: list[Any] = [sc.MemoryTier(maxsize=100)]
    if "redis" in kind:
        tiers.append(sc.RedisTier(redis_url))
    if "sql" in kind:
        tiers.append(sc.SQLTier(f"sqlite:///{folder / 'parity.db'}"))
    return tiers


def _cache(kind: str, redis_url: str, folder: Path) -> sc.Cache:
    folder.mkdir()
    return sc.Cache(
        _tiers(kind, redis_url, folder),
        namespace="par" + uuid.uuid4().hex[:8],
        default_ttl=300,
        clock=sc.ManualClock(),
    )


def _stats(cache: sc.Cache) -> dict[str, Any]:
    stats = cache.stats()
    del stats["namespace"]
    return stats


@pytest.mark.parametrize("kind", ["memory", "memory-redis", "memory-sql", "memory-redis-sql"])
def test_async_and_sync_clients_agree(kind: str, redis_url: str, tmp_path: Path) -> None:
    """The same operations give the same results, counters, signals and audit records."""
    async_cache = _cache(kind, redis_url, tmp_path / "async")
    sync_cache = _cache(kind, redis_url, tmp_path / "sync")
    async_record, sync_record = Record(async_cache), Record(sync_cache)

    async def run_async() -> None:
        async with async_cache:
            for operation, args, kwargs in SCRIPT:
                async_record.note(operation, await getattr(async_cache, operation)(*args, **kwargs))
            async_record.note("stats", _stats(async_cache))

    try:
        asyncio.run(run_async())
        with sync_cache.sync as facade:
            for operation, args, kwargs in SCRIPT:
                sync_record.note(operation, getattr(facade, operation)(*args, **kwargs))
            sync_record.note("stats", _stats(sync_cache))
    finally:
        async_record.close()
        sync_record.close()
    assert sync_record.events == async_record.events


def test_both_clients_take_the_same_arguments() -> None:
    """Every public operation of the async client exists on cache.sync with the same parameters."""
    import inspect

    cache = sc.Cache([sc.MemoryTier()], namespace="sig")
    operations = {name for name, *_ in SCRIPT} | {"get_or_set_many", "stats"}
    for name in sorted(operations):
        async_params = inspect.signature(getattr(cache, name)).parameters
        sync_params = inspect.signature(getattr(cache.sync, name)).parameters
        assert list(async_params) == list(sync_params), name
        for param in async_params:
            assert async_params[param].kind == sync_params[param].kind, (name, param)
            assert async_params[param].default == sync_params[param].default, (name, param)


@pytest.mark.parametrize("loader", [5, "load", None])
def test_a_loader_that_is_not_callable_is_a_config_error_in_both_clients(loader: Any) -> None:
    """``get_or_set``/``get_or_set_many`` check the loader at the call site, hit or miss."""
    cache = sc.Cache([sc.MemoryTier()], namespace="ldr")

    async def run_async() -> None:
        async with cache:
            with pytest.raises(sc.ConfigError, match="loader must be callable"):
                await cache.get_or_set("k", loader)
            with pytest.raises(sc.ConfigError, match="loader must be callable"):
                await cache.get_or_set_many(["k"], loader)

    asyncio.run(run_async())
    with cache.sync as facade:
        with pytest.raises(sc.ConfigError, match="loader must be callable"):
            facade.get_or_set("k", loader)
        with pytest.raises(sc.ConfigError, match="loader must be callable"):
            facade.get_or_set_many(["k"], loader)

"""stratacache: a multi-level cache (in-process LRU → Redis → SQL) for sync and async Python.

``import stratacache`` does no I/O and builds nothing; tiers whose drivers are
optional extras (``SQLTier``) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import config, events, warming
from . import decorators as _decorators
from .client import Cache
from .core import durations
from .core.clock import Clock, ManualClock, SystemClock
from .core.codec import EntryCodec
from .core.entry import Entry
from .core.envelope import Compression, FernetEncryption, HMACSigner
from .core.errors import (
    CacheKeyError,
    ConfigError,
    DeserializationError,
    MissingKeyError,
    MovedValueError,
    NotStartedError,
    SerializationError,
    StratacacheError,
    TierError,
    WrongTypeError,
)
from .core.fleet import (
    FleetLock,
    FleetSource,
    GenerationStore,
    HotKeyHost,
    HotSet,
    Invalidation,
    InvalidationBus,
    LockAttempt,
    SyncFleetLock,
)
from .core.registry import TypeRegistry, register_type
from .core.sentinel import MISS, UNSET, Miss, Unset
from .core.serializer import MsgpackSerializer, Serializer
from .core.tier import SyncTier, Tier, TierContext
from .engine import signals
from .engine.decorated import AsyncCachedFunction, CacheDecorator, CachedFunction
from .engine.stats import (
    EngineStatsReport,
    FunctionStats,
    FunctionStatsReport,
    StatsReport,
    TierStatsReport,
)
from .engine.sync import SyncCache
from .fleet.bus import RedisBus
from .fleet.connection import RedisConnection
from .fleet.hotkeys import HotKeys
from .fleet.lock import RedisLock
from .tiers.memory import MemoryTier

if TYPE_CHECKING:
    from .tiers.aiocache import AiocacheTier
    from .tiers.redis import RedisTier
    from .tiers.sql import SQLBus, SQLTier

cached = _decorators.cached
JSONLinesAuditLog = events.JSONLinesAuditLog
TagRules = events.TagRules

_LAZY = {
    "RedisTier": "stratacache.tiers.redis",
    "SQLTier": "stratacache.tiers.sql",
    "SQLBus": "stratacache.tiers.sql",
    "AiocacheTier": "stratacache.tiers.aiocache",
}

__version__ = "0.1.0"

__all__ = [
    "MISS",
    "UNSET",
    "AiocacheTier",
    "AsyncCachedFunction",
    "Cache",
    "CacheDecorator",
    "CacheKeyError",
    "CachedFunction",
    "Clock",
    "Compression",
    "ConfigError",
    "DeserializationError",
    "EngineStatsReport",
    "Entry",
    "EntryCodec",
    "FernetEncryption",
    "FleetLock",
    "FleetSource",
    "FunctionStats",
    "FunctionStatsReport",
    "GenerationStore",
    "HMACSigner",
    "HotKeyHost",
    "HotKeys",
    "HotSet",
    "Invalidation",
    "InvalidationBus",
    "JSONLinesAuditLog",
    "LockAttempt",
    "ManualClock",
    "MemoryTier",
    "Miss",
    "MissingKeyError",
    "MovedValueError",
    "MsgpackSerializer",
    "NotStartedError",
    "RedisBus",
    "RedisConnection",
    "RedisLock",
    "RedisTier",
    "SQLBus",
    "SQLTier",
    "SerializationError",
    "Serializer",
    "StatsReport",
    "StratacacheError",
    "SyncCache",
    "SyncFleetLock",
    "SyncTier",
    "SystemClock",
    "TagRules",
    "Tier",
    "TierContext",
    "TierError",
    "TierStatsReport",
    "TypeRegistry",
    "Unset",
    "WrongTypeError",
    "cached",
    "config",
    "durations",
    "events",
    "register_type",
    "signals",
    "warming",
]


if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all attribute

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'stratacache' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value

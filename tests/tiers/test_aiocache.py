"""AiocacheTier specifics: async-only, unsupported prefix deletion, configuration errors."""

from __future__ import annotations

from collections import UserDict
from typing import Any

import aiocache
import pytest

from stratacache.core.errors import ConfigError, StratacacheError
from stratacache.core.tier import SyncTier, Tier, TierContext
from stratacache.tiers.aiocache import AiocacheTier


def test_is_an_async_only_tier() -> None:
    """The adapter implements Tier but not SyncTier."""
    tier = AiocacheTier(aiocache.SimpleMemoryCache())
    assert isinstance(tier, Tier) and not isinstance(tier, SyncTier)


def test_rejects_non_aiocache_objects() -> None:
    """Anything but an aiocache cache is a ConfigError."""
    with pytest.raises(ConfigError):
        AiocacheTier(object())


async def test_delete_prefix_unsupported_backend_is_clear_error() -> None:
    """A backend that cannot list its keys raises a StratacacheError naming it."""

    class Opaque(aiocache.SimpleMemoryCache):  # type: ignore[misc]
        """A backend whose store cannot be listed by the adapter."""

        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self._cache = UserDict()

    tier = AiocacheTier(Opaque())
    await tier.start(TierContext("shop"))
    with pytest.raises(StratacacheError, match="not supported"):
        await tier.delete_prefix("shop:")

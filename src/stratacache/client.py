"""``stratacache.Cache``: the engine's cache with its front doors as methods.

Why here: the engine (``engine.cache.Cache``) knows nothing of decorators,
warming, blinker rules or configuration strings; this subclass adds them as
methods by importing those front doors directly, so nothing is attached to a
class at import time.
Front doors that take a cache (``sc.cached(cache, ...)``, the middleware, the
query cache) accept the engine's class, and so this one too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from blinker import ANY

from . import config, decorators, events, warming
from .engine.cache import Cache as CacheEngine

if TYPE_CHECKING:
    from typing_extensions import Self, Unpack

    from .engine.decorated import CacheDecorator, CachedOptions


class Cache(CacheEngine):
    """A multi-level cache: the engine's operations plus ``cached``, ``warm``,
    ``invalidate_on`` and the ``from_url``/``from_env``/``from_dict`` builders.

    Takes the same arguments as the engine's ``Cache`` (see ``stratacache.engine.cache``).
    """

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """A cache over comma-separated tier URLs, top-down (see ``stratacache.config``).

        Raises:
            ConfigError: anything in ``url`` or ``options`` the constructors would refuse.
        """
        return config.build_from_url(cls, url, **options)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> Self:
        """A cache from ``STRATACACHE_URL`` and ``STRATACACHE_*`` variables (``os.environ`` by default).

        Raises:
            ConfigError: ``STRATACACHE_URL`` missing, or a variable with a bad value (named).
        """
        return config.build_from_env(cls, environ, **options)

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> Self:
        """A cache from a settings mapping with ``tiers`` (see ``stratacache.config``).

        Raises:
            ConfigError: a missing ``tiers``, an unknown key or a bad value (named).
        """
        return config.build_from_dict(cls, settings)

    def cached(self, **options: Unpack[CachedOptions]) -> CacheDecorator:
        """Decorate a sync or async function to cache its results (``stratacache.cached``)."""
        return decorators.cached(self, **options)

    async def warm(
        self,
        *,
        concurrency: int = 16,
        progress: warming.Progress | None = None,
        from_hot: bool = False,
        hot_limit: int = 1000,
        warmers: Iterable[tuple[Callable[..., Any], Any]] | None = None,
    ) -> warming.WarmSummary:
        """Run the registered warmers (see ``stratacache.warming.warm``); returns a summary."""
        return await warming.warm(
            self,
            concurrency=concurrency,
            progress=progress,
            from_hot=from_hot,
            hot_limit=hot_limit,
            warmers=warmers,
        )

    def invalidate_on(
        self,
        signal: Any,
        *,
        keys: events.Spec = None,
        tags: events.Spec = None,
        prefix: events.Spec = None,
        reason: str | None = None,
        actor: str | None = None,
        sender: Any = ANY,
    ) -> events.InvalidationRule:
        """Invalidate whenever a blinker ``signal`` is sent (``stratacache.events.invalidate_on``)."""
        return events.invalidate_on(
            self,
            signal,
            keys=keys,
            tags=tags,
            prefix=prefix,
            reason=reason,
            actor=actor,
            sender=sender,
        )


__all__ = ["Cache"]

"""The decorator's types: ``CachedOptions`` is exactly what ``stratacache.cached`` takes."""

from __future__ import annotations

import inspect

import stratacache as sc
from stratacache.engine.decorated import CachedOptions


def test_cached_options_match_the_decorator_keywords() -> None:
    """``cache.cached(**options)`` is typed with every keyword of ``sc.cached``, and no other."""
    keywords = {
        name
        for name, p in inspect.signature(sc.cached).parameters.items()
        if p.kind is p.KEYWORD_ONLY
    }
    assert set(CachedOptions.__annotations__) == keywords


def test_decorated_functions_have_the_documented_attributes() -> None:
    """Sync and async decorated functions carry what ``CachedFunction`` promises."""
    cache = sc.Cache(tiers=[sc.MemoryTier()], bus=False)

    @cache.cached()
    def f(x: int) -> int:
        return x

    @cache.cached()
    async def g(x: int) -> int:
        return x

    for fn in (f, g):
        for name in ("invalidate", "refresh", "key", "refresh_hot", "stats", "__wrapped__"):
            assert hasattr(fn, name), name
    assert inspect.iscoroutinefunction(g.refresh) and not inspect.iscoroutinefunction(f.refresh)
    assert inspect.iscoroutinefunction(g)

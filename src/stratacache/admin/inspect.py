"""Looking at what a cache holds: key pages from one tier, an entry as each tier keeps it."""

from __future__ import annotations

from typing import Any

from ..core.errors import StratacacheError
from ..core.tier import KeyScanner
from ..engine.cache import Cache
from .problems import Problem

#: most keys one ``/keys`` page returns
MAX_PAGE = 1000
#: SCAN steps one page may take before it answers with what it has (and a cursor)
MAX_STEPS = 20


def listing_tier(cache: Cache, name: str | None) -> Any:
    """The tier to list keys from: ``name``, else the first shared tier that can (Redis in
    memory -> Redis -> SQL, listed with SCAN), else the memory tier."""
    scanners = [s.tier for s in cache.tiers.slots if isinstance(s.tier, KeyScanner)]
    if name is not None:
        for tier in scanners:
            if tier.name == name:
                return tier
        names = ", ".join(t.name for t in scanners) or "none"
        raise Problem(400, f"no tier named {name!r} can list keys (tiers that can: {names})")
    if not scanners:
        raise Problem(400, "no tier of this cache can list its keys")
    shared = [t for t in scanners if getattr(t, "shared", False)]
    return (shared or scanners)[0]


async def key_page(
    cache: Cache, prefix: str, limit: int, cursor: str, tier_name: str | None
) -> dict[str, Any]:
    """Up to about ``limit`` keys starting with ``prefix`` (relative keys) and the next cursor.

    Raises:
        Problem: 400 for a bad cursor or tier name; 503 when the tier fails.
    """
    tier = listing_tier(cache, tier_name)
    await cache.start()
    base = cache.full_key("_")[:-1]  # the namespace (and generation) part of every full key
    keys: list[str] = []
    for _ in range(MAX_STEPS):
        try:
            page, cursor = await tier.scan_keys(base + prefix, cursor, limit - len(keys))
        except (ValueError, TypeError) as exc:
            raise Problem(400, "cursor is not one this API returned") from exc
        except StratacacheError as exc:
            raise Problem(503, f"tier {tier.name!r} could not list keys: {exc}") from exc
        keys.extend(cache.relative_key(k) for k in page)
        if not cursor or len(keys) >= limit:
            break
    return {"tier": tier.name, "keys": keys, "cursor": cursor or None}


async def describe(cache: Cache, key: str, with_value: bool) -> dict[str, Any]:
    """How every tier holds ``key``: presence, remaining life, tags, size, age.

    Raises:
        CacheKeyError: ``key`` is not a valid key.
        Problem: 404 when no tier holds it.
    """
    fkey = cache.full_key(key)
    await cache.start()
    now = cache.clock.time()
    tiers: dict[str, Any] = {}
    value: Any = None
    found = False
    for slot in cache.tiers.slots:
        tier = slot.tier
        try:
            peek = getattr(tier, "peek", None)  # a memory tier: no LRU touch
            entry = peek(fkey) if callable(peek) else await tier.get(fkey)
        except Exception as exc:  # a failing tier is reported, not raised
            tiers[slot.name] = {"present": False, "error": f"{type(exc).__name__}: {exc}"}
            continue
        if entry is None or entry.is_gone(now):
            tiers[slot.name] = {"present": False}
            continue
        found = True
        if value is None:
            value = entry.value
        size = entry.size or (len(entry.payload) if entry.payload is not None else None)
        tiers[slot.name] = {
            "present": True,
            "fresh": entry.is_fresh(now) and not entry.is_expired(now),
            "age": round(now - entry.created, 3),
            "expires_in": None if entry.expires is None else round(entry.expires - now, 3),
            "kept_for": _rounded(entry.keep_for(now, tier.ttl)),
            "tags": list(entry.tags),
            "size": size,
        }
    if not found:
        raise Problem(404, f"no tier holds the key {key!r}")
    result: dict[str, Any] = {"key": key, "full_key": fkey, "tiers": tiers}
    if with_value:
        result["value"] = value
    return result


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 3)

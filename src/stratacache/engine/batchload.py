"""``get_or_set_many``'s load: one load per key in this process, shared with ``get_or_set``.

Why: a batch and a single-key load of one key running side by side would each store
their own result, and the older load's could be the one every tier keeps. The batch
joins the loads already in flight for its keys and registers its own keys as in
flight, so a single-key load arriving meanwhile joins it (``ReadThrough.claim``,
``SyncReadThrough.claim``). Both drivers make the same decisions.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

from ..core.entry import Entry
from .atomic import Host, ManyLoader, SyncHost, loaded_subset
from .flight import UNLOADED
from .policy import EntryPolicy


def _entries(
    cache: Host, fresh: dict[str, Any], mine: list[str], policy: EntryPolicy, tags: tuple[str, ...]
) -> dict[str, Entry]:
    """The entries the batch loaded, by caller's key (every one answers a joined load)."""
    return {k: cache.new_entry(fresh[k], policy, tags) for k in mine if k in fresh}


def _stores(cache: Host, entry: Entry) -> bool:
    return entry.value is not None or cache.policy.cache_none


async def load_many(
    cache: Host, missing: list[str], loader: ManyLoader, policy: EntryPolicy, tags: tuple[str, ...]
) -> dict[str, Any]:
    """``{key: value}`` for ``missing``: from ``loader`` or from loads already in flight."""
    rt = cache.readthrough
    fkeys = {k: cache.full_key(k) for k in missing}
    own, joined = rt.claim(list(fkeys.values()), tags)
    mine = [k for k in missing if fkeys[k] in own]
    entries: dict[str, Entry] = {}
    out: dict[str, Any] = {}
    try:
        if mine:
            # leases first, as a read-through load takes them: an invalidation that comes
            # while the loader runs voids them, and the (now stale) results are not stored
            leases = await asyncio.gather(*(cache.tiers.leases(fkeys[k], tags) for k in mine))
            loaded = loader(mine)
            if inspect.isawaitable(loaded):
                loaded = await loaded
            fresh = loaded_subset(loaded, mine)
            entries = _entries(cache, fresh, mine, policy, tags)
            now = cache.clock.time()
            for key, held in zip(mine, leases, strict=True):
                entry = entries.get(key)
                if entry is not None and _stores(cache, entry):
                    await cache.tiers.write(fkeys[key], entry, held, now)
            out.update(fresh)
    except Exception as exc:
        for flight in own.values():
            flight.settle(None, exc)
        raise
    finally:  # (after an error, a no-op) a key the loader left out: its joiners load it
        for key in mine:
            own[fkeys[key]].settle(entries.get(key, UNLOADED))
    for key in missing:
        waiter = joined.get(fkeys[key])
        if waiter is not None and (done := await waiter) is not UNLOADED:
            out[key] = done.value
    return out


def load_many_sync(
    sync: SyncHost,
    missing: list[str],
    loader: ManyLoader,
    policy: EntryPolicy,
    tags: tuple[str, ...],
) -> dict[str, Any]:
    """``load_many``, blocking (``loader`` sync or async, as there)."""
    cache, rt = sync.cache, sync.loading
    fkeys = {k: cache.full_key(k) for k in missing}
    own, joined = rt.claim(list(fkeys.values()), tags)
    mine = [k for k in missing if fkeys[k] in own]
    entries: dict[str, Entry] = {}
    out: dict[str, Any] = {}
    try:
        if mine:
            leases = [sync.io.leases(fkeys[k], tags) for k in mine]  # as ``load_many``
            loaded = rt.call(loader, mine)  # an async loader too, as ``get_or_set`` takes
            fresh = loaded_subset(loaded, mine)
            entries = _entries(cache, fresh, mine, policy, tags)
            for key, held in zip(mine, leases, strict=True):
                entry = entries.get(key)
                if entry is not None and _stores(cache, entry):
                    sync.io.write(fkeys[key], entry, held, cache.clock.time())
            out.update(fresh)
    except Exception as exc:
        for key in mine:
            rt.settle(fkeys[key], own[fkeys[key]], None, exc)
        raise
    except BaseException:
        for key in mine:
            rt.settle(fkeys[key], own[fkeys[key]], UNLOADED)
        raise
    for key in mine:
        rt.settle(fkeys[key], own[fkeys[key]], entries.get(key, UNLOADED))
    for key in missing:
        future = joined.get(fkeys[key])
        if future is not None and (done := future.result()) is not UNLOADED:
            out[key] = done.value
    return out


__all__ = ["load_many", "load_many_sync"]

"""The invalidation half of a ``Cache``: build, apply, publish and audit invalidations.

Order matters for the coherence promise ("after ``invalidate`` returns, nobody
serves the old value"): tiers are outdated bottom-up (so no reader refills an
upper tier from a lower one that still has the old value), then the message
goes on the bus (other processes evict their local copies), then signals and
audit hooks run. Shared tiers are always attempted, even with an open circuit
breaker: a skipped invalidation would be served later as a fresh hit.

Namespace flush is O(1): the namespace *generation* is folded into every full
key (``ns:key`` at generation 0, ``ns:~gN:key`` after), so bumping it makes
every old entry unreachable at once; old entries then age out by TTL. The
generation is shared through the bus when it is a ``GenerationStore``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from ..core.errors import CacheKeyError, ConfigError
from ..core.fleet import GenerationStore, Invalidation
from ..core.keys import validate_key
from . import degradation, signals
from .signals import send as _send

if TYPE_CHECKING:
    from .cache import Cache

log = logging.getLogger("stratacache")

#: relative keys starting with this are generation-qualified (``~g3:user:1``); users' keys may not
GEN_MARK = "~g"
TagExpander = Callable[[tuple[str, ...]], tuple[str, ...]]
AuditHook = Callable[[Invalidation], None]


def generation_prefix(namespace: str, generation: int) -> str:
    """The start of every full key of ``namespace`` at ``generation``."""
    return f"{namespace}:" if generation == 0 else f"{namespace}:{GEN_MARK}{generation}:"


def check_relative(key: str) -> str:
    """Reject user keys that could collide with a later generation's keys."""
    if key[:2] == GEN_MARK:
        raise CacheKeyError(f"cache keys may not start with {GEN_MARK!r} (reserved): {key!r}")
    return key


class Invalidator:
    """Builds ``Invalidation`` messages and applies them locally, remotely and to the audit trail."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        #: current namespace generation (folded into ``Cache.full_key``)
        self.generation = 0
        #: expands tags through cascade rules (set by ``stratacache.events.tag_rules``)
        self.tag_expander: TagExpander | None = None
        #: called with every invalidation, local and remote (``events.audit`` filters)
        self.audit_hooks: list[AuditHook] = []
        #: bus publishes that failed (other processes' L1 then keeps the value until its TTL)
        self.publish_failures = 0

    # -- building --------------------------------------------------------------------------
    def message(
        self,
        keys: Iterable[str],
        tags: Iterable[str],
        prefix: str | Iterable[str] | None,
        reason: str | None,
        actor: str | None = None,
    ) -> Invalidation:
        """Check ``invalidate``'s arguments and build the message (full keys, expanded tags)."""
        if isinstance(keys, str) or isinstance(tags, str):
            raise ConfigError("keys and tags take lists of strings, not a single string")
        cache = self.cache
        limit = cache.max_key_length
        prefixes = [prefix] if isinstance(prefix, str) else list(prefix or ())
        tag_tuple = tuple(validate_key(t, limit) for t in tags)
        if tag_tuple and self.tag_expander is not None:
            tag_tuple = self.tag_expander(tag_tuple)
        cache.counters.invalidations += 1
        return Invalidation(
            keys=tuple(self._full(k) for k in keys),
            tags=tag_tuple,
            prefixes=tuple(cache._prefix + validate_key(p, limit) for p in prefixes),
            reason=reason,
            origin=cache.origin,
            actor=actor,
            at=time.time(),
        )

    def _full(self, key: str) -> str:
        """Full key of a relative key; generation-qualified keys (``~g3:k``) are taken as they are."""
        if isinstance(key, str) and key[:2] == GEN_MARK:
            return f"{self.cache.namespace}:{validate_key(key, self.cache.max_key_length)}"
        return self.cache.full_key(key)

    # -- local application -----------------------------------------------------------------
    async def invalidate(self, message: Invalidation) -> None:
        """Outdate ``message`` in every tier here, then tell the other processes and the audit.

        What a shared tier could not take is kept and replayed later (``engine.replay``).
        """
        tiers = self.cache.tiers
        errors = tiers.shared_errors()
        await tiers.invalidate(message, local_only=False)
        self.settle(message, errors)
        self.detach(message)
        await self.publish(message)
        self.announce(message, "local")

    async def clear(self, reason: str | None, actor: str | None) -> None:
        """Remove every entry of the namespace from every tier, everywhere."""
        cache = self.cache
        errors = cache.tiers.shared_errors()
        await cache.tiers.clear(local_only=False)
        message = self._clear_message(reason, actor, 0)
        self.settle(message, errors)
        self.detach(message)
        await self.publish(message)
        self.announce(message, "local")

    async def flush_namespace(self, reason: str | None, actor: str | None) -> int:
        """Move to a new generation: every entry written before becomes unreachable, in O(1)."""
        cache = self.cache
        store = cache.bus if isinstance(cache.bus, GenerationStore) else None
        if store is None and any(not slot.local for slot in cache.tiers.slots):
            # Other processes could not learn a private generation: remove the entries instead.
            log.info("stratacache: flush_namespace without a generation-keeping bus clears tiers")
            await self.clear(reason, actor)
            return self.generation
        generation = await store.bump_generation() if store else self.generation + 1
        self.set_generation(generation)
        message = self._clear_message(reason, actor, generation)
        self.detach(message)
        await self.publish(message)
        self.announce(message, "local")
        return generation

    def _clear_message(
        self, reason: str | None, actor: str | None, generation: int
    ) -> Invalidation:
        self.cache.counters.invalidations += 1
        return Invalidation(
            clear=True,
            reason=reason,
            origin=self.cache.origin,
            actor=actor,
            at=time.time(),
            generation=generation,
        )

    def set_generation(self, generation: int) -> bool:
        """Adopt ``generation`` if newer; local tiers are dropped (old-generation entries die)."""
        if generation <= self.generation:
            return False
        self.generation = generation
        cache = self.cache
        cache._prefix = generation_prefix(cache.namespace, generation)
        cache.tiers.clear_local_now()
        return True

    def detach(self, message: Invalidation) -> None:
        """Keep callers arriving from now on out of loads/reads that began before ``message``."""
        cache = self.cache
        cache.readthrough.detach(message)
        if cache._sync is not None:
            cache._sync.detach(message)

    def settle(self, message: Invalidation, errors_before: int) -> None:
        """Keep ``message`` for replay if a shared tier failed while it was applied."""
        if self.cache.tiers.shared_errors() > errors_before:
            self.cache.replay.keep(message)

    # -- bus -------------------------------------------------------------------------------
    async def publish(self, message: Invalidation) -> None:
        """Send ``message`` on the bus; a failure is logged and the message kept for replay."""
        bus = self.cache.bus
        if bus is not None:
            try:
                await bus.publish(message)
            except Exception as exc:
                self.publish_failures += 1
                log.warning("stratacache: invalidation bus publish failed: %r", exc)
                self.cache.replay.keep(message)

    def apply_remote(self, message: Invalidation) -> None:
        """Apply another process's message to this process's local tiers (sync, no awaits)."""
        cache = self.cache
        if message.origin == cache.origin:
            return
        if message.generation:
            self.set_generation(message.generation)
        if message.clear:
            self.detach(message)
            if not message.generation:
                cache.tiers.clear_local_now()
            if message.origin:  # origin "" marks the bus's own catch-up, not an invalidation
                self.announce(message, "remote")
            return
        cache.tiers.invalidate_local_now(message)
        self.detach(message)
        if message.reason not in ("overwrite", "tracking"):  # cache mechanics, not user intent
            self.announce(message, "remote")

    def on_bus_state(self, connected: bool) -> None:
        """Bus lost: serve local entries only within the staleness bound; back: empty them once.

        See ``engine.degradation``; ``staleness_bound=0`` restores distrust-all.
        """
        cache = self.cache
        tiers = cache.tiers
        self.detach(Invalidation(clear=True))  # loads may have read what a lost message outdated
        if connected:
            degradation.leave(tiers)
            tiers.local_trusted = True
        else:  # not trusted: decorators stop memoizing; reads obey the bound (or skip L1)
            tiers.local_trusted = False
            if cache.staleness_bound > 0:
                degradation.enter(tiers, cache.staleness_bound, cache.clock.time())
            else:
                tiers.clear_local_now()
        _send(signals.bus_state, cache, connected=connected)

    # -- signals and audit -----------------------------------------------------------------
    def announce(self, message: Invalidation, origin: str) -> None:
        """Send ``invalidated`` (or ``cleared``) and run the audit hooks."""
        cache = self.cache
        if message.clear:
            _send(
                signals.cleared,
                cache,
                origin=origin,
                generation=message.generation,
                reason=message.reason,
                actor=message.actor,
            )
        else:
            _send(
                signals.invalidated,
                cache,
                keys=message.keys,
                tags=message.tags,
                prefixes=message.prefixes,
                reason=message.reason,
                actor=message.actor,
                origin=origin,
            )
        for hook in self.audit_hooks:
            try:
                hook(message)
            except Exception as exc:
                log.warning("stratacache: audit hook failed: %r", exc)

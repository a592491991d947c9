"""The invalidation half of a ``Cache``: build, apply, publish and audit invalidations.

Order matters for the coherence promise ("after ``invalidate`` returns, nobody
serves the old value"): tiers are outdated bottom-up (so no reader refills an
upper tier from a lower one that still has the old value), then the message
goes on the bus (other processes evict their local copies), then signals and
audit hooks run. That order is ``Invalidator.flow``, written once and driven by
the async client (``Cache``) and the blocking one (``cache.sync``). Shared
tiers are always attempted, even with an open circuit breaker: a skipped
invalidation would be served later as a fresh hit.

Namespace flush is O(1) (``engine.keyspace``): a new generation makes every
old entry unreachable at once; the generation is shared through the bus when
it is a ``GenerationStore``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterable

from ..core.clock import Clock
from ..core.errors import ConfigError
from ..core.fleet import Invalidation, InvalidationBus
from ..core.keys import validate_key
from . import degradation, signals
from .accounting import Recorder
from .keyspace import KeySpace
from .replay import Replay
from .stack import TierStack

log = logging.getLogger("stratacache")

TagExpander = Callable[[tuple[str, ...]], tuple[str, ...]]
AuditHook = Callable[[Invalidation], None]
Detacher = Callable[[Invalidation], None]
#: what ``Invalidator.flow`` asks its driver: apply the message to the tiers, or publish it
APPLY, PUBLISH = "apply", "publish"
Flow = Generator[tuple[str, Invalidation], None, None]


class Invalidator:
    """Builds ``Invalidation`` messages and applies them locally, remotely and to the audit trail."""

    def __init__(
        self,
        keys: KeySpace,
        tiers: TierStack,
        rec: Recorder,
        clock: Clock,
        bus: InvalidationBus | None,
        replay: Replay,
        staleness_bound: float,
        tag_expander: TagExpander | None = None,
    ) -> None:
        self.keys = keys
        self.tiers = tiers
        self.rec = rec
        self.clock = clock
        self.bus = bus
        self.replay = replay
        self.staleness_bound = staleness_bound
        #: this process's identity on the bus (new after ``fork``)
        self.origin = ""
        #: expands tags through cascade rules (``Cache(tag_rules=...)``, ``events.tag_rules``)
        self.tag_expander = tag_expander
        #: called with every invalidation, local and remote (``events.audit`` filters)
        self.audit_hooks: list[AuditHook] = []
        #: bus publishes that failed (other processes' L1 then keeps the value until its TTL)
        self.publish_failures = 0
        #: in-flight tables to detach from on every invalidation (each driver adds its own)
        self.detachers: list[Detacher] = []

    @property
    def generation(self) -> int:
        """The current namespace generation."""
        return self.keys.generation

    # -- building --------------------------------------------------------------------------
    def message(
        self,
        keys: Iterable[str] | None,
        tags: Iterable[str] | None,
        prefix: str | Iterable[str] | None,
        reason: str | None,
        actor: str | None = None,
    ) -> Invalidation:
        """Check ``invalidate``'s arguments and build the message (full keys, expanded tags);
        ``None`` is "not given" for ``keys``, ``tags`` and ``prefix`` alike."""
        space = self.keys
        key_tuple = _strings("keys", keys)
        tag_tuple = tuple(validate_key(t, space.max_key_length) for t in _strings("tags", tags))
        prefixes = (
            (prefix,) if isinstance(prefix, str) else _strings("prefix", prefix, "a string, ")
        )
        if tag_tuple and self.tag_expander is not None:
            tag_tuple = self.tag_expander(tag_tuple)
        message = Invalidation(
            keys=tuple(space.invalidation_key(k) for k in key_tuple),
            tags=tag_tuple,
            prefixes=tuple(space.full_prefix(p) for p in prefixes),
            reason=reason,
            origin=self.origin,
            actor=actor,
            at=time.time(),
        )
        self.rec.counters.invalidations += 1
        return message

    def clear_message(
        self, reason: str | None, actor: str | None, generation: int = 0
    ) -> Invalidation:
        """The message of a ``clear()`` (or, with ``generation``, a namespace flush); counted."""
        self.rec.counters.invalidations += 1
        return Invalidation(
            clear=True,
            reason=reason,
            origin=self.origin,
            actor=actor,
            at=time.time(),
            generation=generation,
        )

    def overwrite(self, fkeys: tuple[str, ...]) -> Invalidation:
        """The bus message of an explicit write: other processes drop their local copies."""
        return Invalidation(keys=fkeys, reason="overwrite", origin=self.origin)

    # -- local application (one flow, two drivers) -----------------------------------------
    def flow(self, message: Invalidation) -> Flow:
        """Outdate ``message`` in every tier here, then tell the other processes and the audit.

        What a shared tier could not take is kept and replayed later (``engine.replay``).
        """
        errors = self.tiers.shared_errors()
        yield APPLY, message
        if self.tiers.shared_errors() > errors:
            self.replay.keep(message)
        self.detach(message)
        yield PUBLISH, message
        self.announce(message, "local")

    def flushed(self, generation: int, reason: str | None, actor: str | None) -> Flow:
        """After a new ``generation`` was chosen: adopt it, then publish and announce it."""
        self.set_generation(generation)
        message = self.clear_message(reason, actor, generation)
        self.detach(message)
        yield PUBLISH, message
        self.announce(message, "local")

    def set_generation(self, generation: int) -> bool:
        """Adopt ``generation`` if newer; local tiers are dropped (old-generation entries die)."""
        if not self.keys.advance(generation):
            return False
        self.tiers.clear_local_now()
        return True

    def detach(self, message: Invalidation) -> None:
        """Keep callers arriving from now on out of loads/reads that began before ``message``."""
        for detach in self.detachers:
            detach(message)

    def settle_write(self, fkeys: tuple[str, ...], errors_before: int) -> None:
        """An overwrite a shared tier refused (full, unreachable) leaves the old value there
        for other processes: keep a deletion of ``fkeys`` for replay (``engine.replay``);
        until it lands, this process serves only its own new copy (local tiers), never the
        shared tiers' older one."""
        if fkeys and self.tiers.shared_errors() > errors_before:
            failed = Invalidation(
                keys=fkeys, reason="write-failed", origin=self.origin, at=time.time()
            )
            self.replay.keep(failed)

    # -- bus -------------------------------------------------------------------------------
    async def publish(self, message: Invalidation) -> None:
        """Send ``message`` on the bus; a failure is logged and the message kept for replay."""
        bus = self.bus
        if bus is not None:
            try:
                await bus.publish(message)
            except Exception as exc:
                self.publish_failed(message, exc)

    def publish_failed(self, message: Invalidation, exc: BaseException) -> None:
        """Count and log a failed publish; the message is replayed when the bus is back."""
        self.publish_failures += 1
        log.warning("stratacache: invalidation bus publish failed: %r", exc)
        self.replay.keep(message)

    def apply_remote(self, message: Invalidation) -> None:
        """Apply another process's message to this process's local tiers (sync, no awaits)."""
        if message.origin == self.origin:
            return
        if message.generation:
            self.set_generation(message.generation)
        if message.clear:
            self.detach(message)
            if not message.generation:
                self.tiers.clear_local_now()
            if message.origin:  # origin "" marks the bus's own catch-up, not an invalidation
                self.announce(message, "remote")
            return
        self.tiers.invalidate_local_now(message)
        self.detach(message)
        if message.reason not in ("overwrite", "tracking"):  # cache mechanics, not user intent
            self.announce(message, "remote")

    def on_bus_state(self, connected: bool) -> None:
        """Bus lost: serve local entries only within the staleness bound; back: empty them once.

        See ``engine.degradation``; ``staleness_bound=0`` restores distrust-all.
        """
        tiers = self.tiers
        if not connected:  # before dropping them: a concurrent reader must not refill them
            tiers.local_trusted = False
        self.detach(Invalidation(clear=True))  # loads may have read what a lost message outdated
        if connected:
            degradation.leave(tiers)
            tiers.local_trusted = True
        else:  # not trusted: decorators stop memoizing; reads obey the bound (or skip L1)
            if self.staleness_bound > 0:
                degradation.enter(tiers, self.staleness_bound, self.clock.time())
            else:
                tiers.clear_local_now()
        self.rec.signal(signals.bus_state, connected=connected)

    # -- signals and audit -----------------------------------------------------------------
    def announce(self, message: Invalidation, origin: str) -> None:
        """Send ``invalidated`` (or ``cleared``) and run the audit hooks."""
        if message.clear:
            self.rec.signal(
                signals.cleared,
                origin=origin,
                generation=message.generation,
                reason=message.reason,
                actor=message.actor,
            )
        else:
            self.rec.signal(
                signals.invalidated,
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


def _strings(name: str, given: Iterable[str] | None, also: str = "") -> tuple[str, ...]:
    """``keys=``, ``tags=`` or ``prefix=`` of ``invalidate`` as a tuple (None: not given);
    a bare string where a list belongs (its letters) or a non-iterable is a ``ConfigError``."""
    if given is None:
        return ()
    if not isinstance(given, (str, bytes)):
        try:
            return tuple(given)
        except TypeError:
            pass
    raise ConfigError(f"{name} must be {also}a list of strings or None, not {given!r}")


__all__ = ["APPLY", "PUBLISH", "Flow", "Invalidator"]

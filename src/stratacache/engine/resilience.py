"""A circuit breaker per tier, closed again by a background probe rather than by a caller.

Closed → open after ``threshold`` consecutive failures. While open, callers
skip the tier and a daemon thread probes it (one cheap read of a key nobody
writes) every ``probe_interval`` seconds, jittered by ±50% so a fleet does not
hit a recovering server in lockstep; the first probe that answers closes the
breaker, so a tier that is back is used again within about
``1.5 * probe_interval`` plus one round trip (well under a second by default).
Tiers that cannot be probed from a thread (async-only tiers) fall back to the
classic cool-down: after ``reset_after`` seconds one caller's call goes through.

Each state change is logged once (not per call), counted (``circuit_opened``,
``circuit_closed``, ``probes``, ``probe_failures`` in ``stats()``) and reported to
``on_change(name, open)`` (the cache turns it into the ``breaker_state`` signal).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable

from ..core.durations import check_duration
from ..core.errors import ConfigError

log = logging.getLogger("stratacache")

#: default seconds between background probes of an open tier (jittered ±50%)
PROBE_INTERVAL = 0.25
Probe = Callable[[], object]
StateHook = Callable[[str, bool], None]


class CircuitBreaker:
    """Skip a failing tier; a background probe closes the circuit when the tier answers again."""

    def __init__(
        self,
        name: str,
        threshold: int = 5,
        reset_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        probe_interval: float = PROBE_INTERVAL,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigError(f"breaker threshold must be an int >= 1, not {threshold!r}")
        reset_after = check_duration("breaker reset_after", reset_after)
        self.name = name
        self.threshold = threshold
        self.reset_after = reset_after
        self.probe_interval = check_duration("breaker probe_interval", probe_interval)
        #: a blocking, cheap call to the tier (raises when it is down); None: callers probe
        self.probe: Probe | None = None
        #: called with ``(name, open)`` on every state change
        self.on_change: StateHook | None = None
        self.opened = 0
        self.closed = 0
        self.probes = 0
        self.probe_failures = 0
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._prober: threading.Thread | None = None
        self._prober_pid = 0
        self._stopped = threading.Event()
        self._random = random.Random()

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def allow(self) -> bool:
        """May a call go to the tier now? Open: no (the prober decides), unless none can run."""
        if self._opened_at is None:
            return True
        if self.probe is not None and not self._stopped.is_set():
            self._ensure_prober()  # e.g. a child after fork has no prober thread
            return False
        if self._clock() - self._opened_at >= self.reset_after:
            self._opened_at = self._clock()  # let one caller through; re-opens if it fails
            return True
        return False

    def success(self) -> None:
        if self._failures:  # cheap when nothing failed, which is every call of a healthy tier
            self._failures = 0
            if self._opened_at is not None:
                self._close("answered")

    def failure(self) -> None:
        self._failures += 1
        if self._failures >= self.threshold and self._opened_at is None:
            self._opened_at = self._clock()
            self.opened += 1
            log.warning(
                "stratacache: tier %r failed %d times in a row, circuit open (probing in the "
                "background)",
                self.name,
                self._failures,
            )
            self._notify(True)
            self._ensure_prober()
        elif self._opened_at is not None:
            self._opened_at = self._clock()

    def stop(self) -> None:
        """Stop probing (the cache is closing); callers fall back to the cool-down."""
        self._stopped.set()

    def restart(self) -> None:
        """Allow probing again (the cache started again)."""
        self._stopped.clear()

    # -- internals -------------------------------------------------------------------------------
    def _close(self, how: str) -> None:
        self._opened_at = None
        self._failures = 0
        self.closed += 1
        log.info("stratacache: tier %r %s again, circuit closed", self.name, how)
        self._notify(False)

    def _notify(self, is_open: bool) -> None:
        hook = self.on_change
        if hook is not None:
            try:
                hook(self.name, is_open)
            except Exception as exc:  # a receiver's bug must not break the tier calls
                log.warning("stratacache: breaker state hook failed: %r", exc)

    def _ensure_prober(self) -> None:
        if self.probe is None or self._stopped.is_set():
            return
        thread = self._prober
        if thread is not None and thread.is_alive() and self._prober_pid == os.getpid():
            return
        self._prober_pid = os.getpid()
        self._prober = threading.Thread(
            target=self._probe_loop, name=f"stratacache-probe-{self.name}", daemon=True
        )
        self._prober.start()

    def _probe_loop(self) -> None:
        probe = self.probe
        while probe is not None and self._opened_at is not None:
            delay = self.probe_interval * (0.5 + self._random.random())
            if self._stopped.wait(delay):
                return
            self.probes += 1
            try:
                probe()
            except Exception:  # still down: try again after the next jittered delay
                self.probe_failures += 1
                continue
            if self._opened_at is not None:
                self._close("answered a probe")
            return

    def as_dict(self) -> dict[str, object]:
        """State and counters for ``stats()``."""
        return {
            "circuit_open": self.is_open,
            "circuit_opened": self.opened,
            "circuit_closed": self.closed,
            "probes": self.probes,
            "probe_failures": self.probe_failures,
        }

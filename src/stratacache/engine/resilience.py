"""A circuit breaker per tier: after repeated failures the tier is skipped for a while."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..core.durations import check_duration
from ..core.errors import ConfigError

log = logging.getLogger("stratacache")


class CircuitBreaker:
    """Closed → open after ``threshold`` consecutive failures; one probe after ``reset_after`` s."""

    def __init__(
        self,
        name: str,
        threshold: int = 5,
        reset_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise ConfigError(f"breaker threshold must be an int >= 1, not {threshold!r}")
        reset_after = check_duration("breaker reset_after", reset_after)
        self.name = name
        self.threshold = threshold
        self.reset_after = reset_after
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def allow(self) -> bool:
        """May a call go to the tier now? (After the cool-down one probe goes through.)"""
        if self._opened_at is None:
            return True
        if self._clock() - self._opened_at >= self.reset_after:
            self._opened_at = self._clock()  # let one probe through; re-opens if it fails
            return True
        return False

    def success(self) -> None:
        if self._failures:  # cheap when nothing failed, which is every call of a healthy tier
            if self._opened_at is not None:
                log.info("stratacache: tier %r is back, circuit closed", self.name)
            self._failures = 0
            self._opened_at = None

    def failure(self) -> None:
        self._failures += 1
        if self._failures >= self.threshold and self._opened_at is None:
            log.warning(
                "stratacache: tier %r failed %d times in a row, circuit open for %.1fs",
                self.name,
                self._failures,
                self.reset_after,
            )
            self._opened_at = self._clock()
        elif self._opened_at is not None:
            self._opened_at = self._clock()

"""Clocks: wall time for entry deadlines, injectable so tests drive time without sleeping."""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """Anything with ``time()`` returning seconds since the epoch as a float."""

    def time(self) -> float: ...


class SystemClock:
    """The real wall clock (``time.time``); deadlines are shared with other processes."""

    time = staticmethod(time.time)


class ManualClock:
    """A clock that moves only when told to: ``advance(seconds)`` or ``set(ts)``."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self._now = start

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def set(self, timestamp: float) -> None:
        self._now = timestamp

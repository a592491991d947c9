"""Durations: the one check every number of seconds passes before stratacache keeps it.

A duration is a real number of seconds (``int``, ``float``, ``fractions.Fraction`` …;
never ``bool``, never a string, never a ``timedelta``: pass ``.total_seconds()``),
finite, at least ``MIN_SECONDS`` (or exactly 0 where 0 has a documented meaning, e.g.
``SQLTier(sweep_interval=0)``: no sweeps) and at most ``MAX_SECONDS``.

The bounds are what every tier and the lock can keep. The minimum is one millisecond,
the unit of a Redis ``PX`` (a lease of 0.4 ms would be ``PX 0``, an error; a TTL of 1 µs
would live 1 µs in memory but 1 ms in Redis). The maximum is 2**31 s (about 68 years):
a Redis ``PX`` in milliseconds and an epoch float in SQL and in memory, also after a
TTL stretched by ``jitter`` (at most doubled) plus a ``stale_ttl``. It is also where
RFC 9111 §1.2.2 clamps HTTP delta-seconds, so an HTTP lifetime always fits.

A value that fails raises ``ConfigError`` naming the parameter, at the call that
received it, before anything is written: a caller's bad value never reaches a tier,
so it is never booked as a tier failure.

``None`` is not a duration. Parameters that accept it say what it means (``ttl=None``:
no expiry; ``stale_ttl=None``: off, the same as 0; ``refresh_after=None``: no soft TTL).
"""

from __future__ import annotations

import datetime
import math
import numbers
from typing import Final

from .errors import ConfigError

#: The longest duration stratacache accepts, in seconds (2**31, about 68 years).
MAX_SECONDS: Final = 2**31
#: The shortest non-zero duration stratacache accepts, in seconds (1 ms, Redis' PX unit).
MIN_SECONDS: Final = 0.001

#: RFC 9111 §1.2.2: a cache receiving a delta-seconds value larger than the greatest
#: integer it can represent, or any later computation overflowing, uses 2**31.
MAX_DELTA_SECONDS: Final = 2**31
_YEAR = 31_557_600


def check_duration(
    name: str,
    value: object,
    *,
    zero_ok: bool = False,
    maximum: float = MAX_SECONDS,
) -> float:
    """``value`` as float seconds, or ``ConfigError`` naming ``name``.

    Args:
        name: the parameter as the caller wrote it (``"ttl"``, ``"RedisLock lease"`` …).
        value: what the caller gave.
        zero_ok: accept exactly 0 (only where 0 has a documented meaning).
        maximum: the largest accepted value in seconds (default ``MAX_SECONDS``).

    Returns:
        The duration in seconds, as a float.

    Raises:
        ConfigError: ``value`` is not a real number, is a bool, is not finite, is negative
            (or 0 when ``zero_ok`` is false), is below ``MIN_SECONDS`` without being 0, or
            exceeds ``maximum``.
    """
    if type(value) is float:  # the common case first
        seconds = value
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except (OverflowError, ValueError):  # an int beyond float range
            seconds = math.inf
    else:
        hint = " (use .total_seconds())" if isinstance(value, datetime.timedelta) else ""
        raise ConfigError(
            f"{name} must be a number of seconds (int or float), not {_show(value)} "
            f"({type(value).__name__}){hint}"
        )
    if not math.isfinite(seconds):
        raise ConfigError(f"{name} must be a finite number of seconds, not {_show(value)}")
    if seconds < 0 or (seconds == 0 and not zero_ok):
        bound = ">= 0" if zero_ok else "> 0"
        raise ConfigError(f"{name} must be {bound} seconds, not {_show(value)}")
    if 0 < seconds < MIN_SECONDS:
        raise ConfigError(
            f"{name} must be at least {MIN_SECONDS} seconds (1 ms), not {_show(value)}"
        )
    if seconds > maximum:
        years = f" (about {maximum / _YEAR:.0f} years)" if maximum >= _YEAR else ""
        raise ConfigError(
            f"{name} must be at most {maximum:.10g} seconds{years}, not {_show(value)}"
        )
    return seconds + 0.0  # -0.0 becomes 0.0


def check_optional(name: str, value: object, *, zero_ok: bool = False) -> float | None:
    """``check_duration`` for parameters where ``None`` has a documented meaning."""
    return None if value is None else check_duration(name, value, zero_ok=zero_ok)


def clamp_delta_seconds(value: int) -> int:
    """An HTTP delta-seconds value clamped to ``MAX_DELTA_SECONDS`` (RFC 9111 §1.2.2)."""
    return min(value, MAX_DELTA_SECONDS)


def check_fraction(name: str, value: object, *, maximum: float = 1.0) -> float:
    """A finite real number in ``[0, maximum]`` (``jitter``, weights), or ``ConfigError``."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        try:
            number = float(value)
        except (OverflowError, ValueError):
            number = math.inf
        if math.isfinite(number) and 0 <= number <= maximum:
            return number
    raise ConfigError(f"{name} must be a number between 0 and {maximum:g}, not {_show(value)}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."

"""The one duration check: what it accepts, what it refuses, and how it names the parameter."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import aiocache
import pytest
from hypothesis import given
from hypothesis import strategies as st

import stratacache as sc
from stratacache.core.durations import (
    MAX_DELTA_SECONDS,
    MAX_SECONDS,
    MIN_SECONDS,
    check_duration,
    check_fraction,
    check_optional,
    clamp_delta_seconds,
)
from stratacache.core.errors import ConfigError
from stratacache.engine.resilience import CircuitBreaker
from stratacache.middleware import CacheRule, HttpCachePolicy, cache_response
from stratacache.tiers.aiocache import AiocacheTier

#: values that are never a duration, whatever the parameter
NEVER = [
    math.inf,
    -math.inf,
    math.nan,
    1e18,
    2**64,
    10**400,
    MAX_SECONDS + 1,
    MAX_SECONDS + 0.5,
    -1,
    -0.001,
    1e-9,
    5e-324,
    0.0004,
    Fraction(1, 10_000),
    True,
    False,
    "5",
    b"5",
    None,
    [5],
    datetime.timedelta(seconds=5),
    Decimal("5"),
    complex(5, 0),
]


@pytest.mark.parametrize("value", NEVER, ids=repr)
def test_never_a_duration(value: object) -> None:
    """Non-finite, too large, negative, bool, text and non-real values raise ConfigError."""
    with pytest.raises(ConfigError, match=r"^lease must be"):
        check_duration("lease", value)


@pytest.mark.parametrize("value", [0, 0.0, -0.0])
def test_zero_only_where_it_means_something(value: float) -> None:
    """0 is refused unless the parameter documents what 0 means."""
    with pytest.raises(ConfigError, match="ttl must be > 0"):
        check_duration("ttl", value)
    assert check_duration("sweep_interval", value, zero_ok=True) == 0.0
    with pytest.raises(ConfigError, match=r"at least 0\.001 seconds"):
        check_duration("sweep_interval", 0.0005, zero_ok=True)


def test_a_timedelta_gets_a_hint() -> None:
    """A timedelta is refused with the way to pass it."""
    with pytest.raises(ConfigError, match=r"total_seconds\(\)"):
        check_duration("ttl", datetime.timedelta(minutes=5))


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (1, 1.0),
        (MIN_SECONDS, 0.001),
        (0.0015, 0.0015),
        (Fraction(1, 4), 0.25),
        (300, 300.0),
        (MAX_SECONDS, float(MAX_SECONDS)),
        (float(MAX_SECONDS), float(MAX_SECONDS)),
    ],
    ids=repr,
)
def test_accepted_durations_come_back_as_float_seconds(value: object, seconds: float) -> None:
    """Positive finite real numbers up to MAX_SECONDS are accepted as float seconds."""
    got = check_duration("ttl", value)
    assert got == seconds and type(got) is float


def test_a_lower_maximum_is_enforced() -> None:
    """A parameter with its own maximum names it in the error."""
    with pytest.raises(ConfigError, match="at most 60 seconds"):
        check_duration("wait", 61, maximum=60)


def test_the_message_names_the_parameter_and_the_value() -> None:
    """The error says which parameter and what was given, shortened when long."""
    with pytest.raises(ConfigError) as info:
        check_duration("RedisLock lease", 10**400)
    message = str(info.value)
    assert message.startswith("RedisLock lease must be") and len(message) < 200


def test_none_is_off_only_where_optional() -> None:
    """check_optional passes None through; check_duration refuses it."""
    assert check_optional("ttl", None) is None
    assert check_optional("ttl", 5) == 5.0
    with pytest.raises(ConfigError, match="ttl must be a number of seconds"):
        check_duration("ttl", None)


@pytest.mark.parametrize("value", [-0.1, 1.5, math.inf, math.nan, True, "0.1", None, 10**400])
def test_fractions_are_finite_and_bounded(value: object) -> None:
    """jitter-like fractions must be finite numbers in [0, maximum]."""
    with pytest.raises(ConfigError, match="jitter must be a number between 0 and 1"):
        check_fraction("jitter", value)


def test_the_maximum_fits_every_tier() -> None:
    """The longest entry life (ttl stretched by jitter, plus stale_ttl) fits Redis PX."""
    longest_ms = (2 * MAX_SECONDS + MAX_SECONDS) * 1000
    assert longest_ms < 2**63 - 1 and MAX_DELTA_SECONDS == MAX_SECONDS == 2**31


@pytest.mark.parametrize(
    ("value", "clamped"), [(0, 0), (60, 60), (2**31, 2**31), (2**31 + 1, 2**31), (10**20, 2**31)]
)
def test_delta_seconds_are_clamped_to_2_31(value: int, clamped: int) -> None:
    """RFC 9111 §1.2.2: delta-seconds beyond 2**31 count as 2**31."""
    assert clamp_delta_seconds(value) == clamped


def _sqlite(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'c.db'}"


#: (what is built, the parameter, the name in the error, whether 0 / None are meaningful)
COMPONENTS: list[tuple[str, Callable[..., object], str, str, bool, bool]] = [
    ("MemoryTier", lambda v, _t: sc.MemoryTier(ttl=v), "ttl", "MemoryTier ttl", False, True),
    ("RedisTier", lambda v, _t: sc.RedisTier(ttl=v), "ttl", "RedisTier ttl", False, True),
    (
        "RedisTier",
        lambda v, _t: sc.RedisTier(socket_timeout=v),
        "socket_timeout",
        "RedisTier socket_timeout",
        False,
        False,
    ),
    (
        "RedisTier",
        lambda v, _t: sc.RedisTier(socket_connect_timeout=v),
        "socket_connect_timeout",
        "RedisTier socket_connect_timeout",
        False,
        False,
    ),
    (
        "RedisTier",
        lambda v, _t: sc.RedisTier(pool_timeout=v),
        "pool_timeout",
        "RedisTier pool_timeout",
        False,
        True,
    ),
    ("SQLTier", lambda v, t: sc.SQLTier(_sqlite(t), ttl=v), "ttl", "SQLTier ttl", False, True),
    (
        "SQLTier",
        lambda v, t: sc.SQLTier(_sqlite(t), sweep_interval=v),
        "sweep_interval",
        "SQLTier sweep_interval",
        True,
        False,
    ),
    (
        "AiocacheTier",
        lambda v, _t: AiocacheTier(aiocache.SimpleMemoryCache(), ttl=v),
        "ttl",
        "AiocacheTier ttl",
        False,
        True,
    ),
    ("RedisLock", lambda v, _t: sc.RedisLock(lease=v), "lease", "RedisLock lease", False, False),
    (
        "RedisLock",
        lambda v, _t: sc.RedisLock(wait_timeout=v),
        "wait_timeout",
        "RedisLock wait_timeout",
        False,
        False,
    ),
    (
        "RedisBus",
        lambda v, _t: sc.RedisBus(health_interval=v),
        "health_interval",
        "RedisBus health_interval",
        False,
        False,
    ),
    (
        "RedisBus",
        lambda v, _t: sc.RedisBus(reconnect_min=v, reconnect_max=MAX_SECONDS),
        "reconnect_min",
        "RedisBus reconnect_min",
        False,
        False,
    ),
    (
        "RedisBus",
        lambda v, _t: sc.RedisBus(reconnect_max=v),
        "reconnect_max",
        "RedisBus reconnect_max",
        False,
        False,
    ),
    (
        "RedisBus",
        lambda v, _t: sc.RedisBus(connect_timeout=v),
        "connect_timeout",
        "RedisBus connect_timeout",
        False,
        False,
    ),
    ("HotKeys", lambda v, _t: sc.HotKeys(interval=v), "interval", "HotKeys interval", False, False),
    (
        "HotKeys",
        lambda v, _t: sc.HotKeys(publish_every=v),
        "publish_every",
        "HotKeys publish_every",
        False,
        False,
    ),
    ("HotKeys", lambda v, _t: sc.HotKeys(horizon=v), "horizon", "HotKeys horizon", True, True),
    (
        "CircuitBreaker",
        lambda v, _t: CircuitBreaker("t", reset_after=v),
        "reset_after",
        "breaker reset_after",
        False,
        False,
    ),
    (
        "cached",
        lambda v, _t: sc.Cache(tiers=[sc.MemoryTier()]).cached(refresh_every=v),
        "refresh_every",
        "refresh_every",
        False,
        True,
    ),
    ("CacheRule", lambda v, _t: CacheRule("/p", ttl=v), "ttl", "CacheRule ttl", True, True),
    (
        "cache_response",
        lambda v, _t: cache_response(ttl=v),
        "ttl",
        "cache_response ttl",
        True,
        True,
    ),
    (
        "HttpCachePolicy",
        lambda v, _t: HttpCachePolicy(default_ttl=v),
        "default_ttl",
        "default_ttl",
        True,
        True,
    ),
    (
        "HttpCachePolicy",
        lambda v, _t: HttpCachePolicy(heuristic_max=v),
        "heuristic_max",
        "heuristic_max",
        True,
        False,
    ),
]


@pytest.mark.parametrize(
    ("build", "label", "zero_ok", "none_ok"),
    [
        pytest.param(b, label, z, n, id=f"{what}-{param}")
        for what, b, param, label, z, n in COMPONENTS
    ],
)
def test_every_component_checks_its_durations(
    build: Callable[[object, Path], object],
    label: str,
    zero_ok: bool,
    none_ok: bool,
    tmp_path: Path,
) -> None:
    """Tiers, lock, bus, hot keys, breaker, decorator and HTTP rules refuse every bad value."""
    bad = [v for v in NEVER if v is not None or not none_ok]
    if not zero_ok:
        bad += [0, 0.0]
    for value in bad:
        with pytest.raises(ConfigError, match=f"^{re.escape(label)} must"):
            build(value, tmp_path)
    build(MAX_SECONDS, tmp_path)  # the maximum itself is fine everywhere
    build(0.25, tmp_path)


ANYTHING = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.fractions(),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.decimals(allow_nan=True),
)


@given(ANYTHING, st.booleans())
def test_any_value_is_a_valid_duration_or_a_config_error(value: object, zero_ok: bool) -> None:
    """Whatever is given, the result is float seconds within the bounds, or ConfigError."""
    try:
        seconds = check_duration("ttl", value, zero_ok=zero_ok)
    except ConfigError as exc:
        assert str(exc).startswith("ttl must")
        return
    assert type(seconds) is float and not isinstance(value, bool)
    assert (zero_ok and seconds == 0) or MIN_SECONDS <= seconds <= MAX_SECONDS
    assert seconds == float(value)  # type: ignore[arg-type]

"""Configuration by URL, environment and dict: same stacks as the constructor form, named errors."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stratacache as sc
from stratacache.config import parse_duration


def _shape(cache: sc.Cache) -> list[tuple[str, str, Any]]:
    """The tier stack as (name, class, ttl), plus the stats keys."""
    return [(s.name, type(s.tier).__name__, s.tier.ttl) for s in cache.tiers.slots]


def test_url_builds_the_same_stack_as_the_constructor(redis_url: str, tmp_path: Path) -> None:
    """memory+redis+sqlite from a URL matches the constructor form, stats shape included."""
    db = f"sqlite:///{tmp_path}/c.db"
    built = sc.Cache.from_url(
        f"memory://?maxsize=10000&ttl=30,{redis_url}?ttl=600,{db}", namespace="shop"
    )
    by_hand = sc.Cache(
        [sc.MemoryTier(maxsize=10_000, ttl=30), sc.RedisTier(redis_url, ttl=600), sc.SQLTier(db)],
        namespace="shop",
    )
    assert _shape(built) == _shape(by_hand)
    assert built.stats().keys() == by_hand.stats().keys()
    assert built.stats()["tiers"].keys() == by_hand.stats()["tiers"].keys()
    assert built.tiers.slots[0].tier.maxsize == 10_000  # type: ignore[attr-defined]
    assert isinstance(built.bus, sc.RedisBus)  # memory above a shared tier: coherent by default


async def test_url_cache_works_end_to_end(redis_url: str) -> None:
    """A cache built from a URL stores and reads back through its tiers."""
    async with sc.Cache.from_url(f"memory://,{redis_url}", namespace="cfg") as cache:
        await cache.set("k", {"a": 1})
        assert await cache.get("k") == {"a": 1}


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"STRATACACHE_DEFAULT_TTL": "5m"}, {"ttl": 300.0}),
        ({"STRATACACHE_DEFAULT_TTL": "none"}, {"ttl": None}),
        ({"STRATACACHE_CACHE_NONE": "false"}, {"cache_none": False}),
        ({"STRATACACHE_STALE_TTL": "1500ms"}, {"stale_ttl": 1.5}),
    ],
)
def test_env_sets_cache_options(environ: dict[str, str], expected: dict[str, Any]) -> None:
    """STRATACACHE_* variables reach the cache's entry policy."""
    cache = sc.Cache.from_env({"STRATACACHE_URL": "memory://", **environ})
    for field, value in expected.items():
        assert getattr(cache.policy, field) == value


def test_env_and_dict_match_url(redis_url: str) -> None:
    """The env and dict forms build the same stack and namespace as the URL form."""
    url = f"memory://?maxsize=50,{redis_url}"
    a = sc.Cache.from_url(url, namespace="n1", bus=False)
    b = sc.Cache.from_env(
        {"STRATACACHE_URL": url, "STRATACACHE_NAMESPACE": "n1", "STRATACACHE_BUS": "off"}
    )
    c = sc.Cache.from_dict({"tiers": url.split(","), "namespace": "n1", "bus": "off"})
    assert _shape(a) == _shape(b) == _shape(c)
    assert a.namespace == b.namespace == c.namespace == "n1"
    assert a.bus is b.bus is c.bus is None


@pytest.mark.parametrize(
    ("url", "options", "named"),
    [
        ("memory://?maxsize=abc", {}, "maxsize"),
        ("memory://?maxsize=0", {}, "maxsize"),
        ("memory://?colour=red", {}, "colour"),
        ("memory://?ttl=soon", {}, "ttl"),
        ("memory://?ttl=-1", {}, "ttl"),
        ("redis://127.0.0.1:1/0?socket_timeout=0", {}, "socket_timeout"),
        ("redis://127.0.0.1:1/0?max_connections=x", {}, "max_connections"),
        ("redis://127.0.0.1:1/0?cluster=maybe", {}, "cluster"),
        ("sqlite:///:memory:?sweep_interval=x", {}, "sweep_interval"),
        ("sqlite:///:memory:?workers=", {}, "workers"),
        ("ftp://host", {}, "ftp"),
        ("nothing", {}, "scheme"),
        ("", {}, "tier URL"),
        ("memory://", {"namespace": "a:b"}, "namespace"),
        ("memory://", {"default_ttl": -3}, "default_ttl"),
        ("memory://", {"jitter": 2}, "jitter"),
        ("memory://", {"colour": 1}, "colour"),
        ("memory://", {"max_key_length": "big"}, "max_key_length"),
        ("memory://", {"cache_none": "no"}, "cache_none"),
        ("memory://", {"bus": True}, "bus"),
        ("memory://", {"lock": True}, "lock"),
    ],
)
def test_bad_options_fail_with_a_named_config_error(
    url: str, options: dict[str, Any], named: str
) -> None:
    """Every bad option is a ConfigError whose message names it."""
    with pytest.raises(sc.ConfigError, match=named):
        sc.Cache.from_url(url, **options)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({}, "STRATACACHE_URL"),
        ({"STRATACACHE_URL": "memory://", "STRATACACHE_JITTER": "lots"}, "STRATACACHE_JITTER"),
        ({"STRATACACHE_URL": "memory://", "STRATACACHE_CACHE_NONE": "perhaps"}, "CACHE_NONE"),
        ({"STRATACACHE_URL": "memory://", "STRATACACHE_BUS": "sometimes"}, "STRATACACHE_BUS"),
        ({"STRATACACHE_URL": "memory://", "STRATACACHE_DEFAULT_TTL": "1 week"}, "DEFAULT_TTL"),
    ],
)
def test_bad_environment_fails_naming_the_variable(environ: dict[str, str], named: str) -> None:
    """A bad or missing variable is a ConfigError naming the variable."""
    with pytest.raises(sc.ConfigError, match=named):
        sc.Cache.from_env(environ)


@pytest.mark.parametrize(
    "settings",
    [{}, {"tiers": 3}, {"tiers": ["memory://", 4]}, {"tiers": "memory://", "stale_ttl": "x"}],
)
def test_bad_dict_fails(settings: dict[str, Any]) -> None:
    """A dict without usable tiers or with a bad value is a ConfigError."""
    with pytest.raises(sc.ConfigError):
        sc.Cache.from_dict(settings)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30.0), ("1.5", 1.5), ("500ms", 0.5), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0)],
)
def test_duration_text(text: str, seconds: float) -> None:
    """Durations in text accept seconds and ms/s/m/h/d suffixes."""
    assert parse_duration("ttl", text) == seconds


@pytest.mark.parametrize(
    ("url", "kind", "where"),
    [
        ("rediss://127.0.0.1:6380/0?ttl=5", "RedisTier", "rediss://127.0.0.1:6380/0"),
        ("unix:///tmp/redis.sock?db=0", "", ""),
        ("redis://127.0.0.1:1/0?cluster=true&ttl=1m", "RedisTier", "redis://127.0.0.1:1/0"),
        ("postgres://u@127.0.0.1:1/db?sslmode=disable&ttl=5", "SQLTier", "postgresql+psycopg://"),
        ("postgresql://u@127.0.0.1:1/db", "SQLTier", "postgresql+psycopg://"),
        ("sqlite:///:memory:?table=t1", "SQLTier", "sqlite://"),
    ],
)
def test_schemes_pick_their_tier(url: str, kind: str, where: str) -> None:
    """Each documented scheme builds its tier (no connection); unknown redis options are refused."""
    if not kind:  # redis-py URL parameters are not tier options: refused, not guessed
        with pytest.raises(sc.ConfigError, match="db"):
            sc.Cache.from_url(url)
        return
    tier = sc.Cache.from_url(url).tiers.slots[0].tier
    assert type(tier).__name__ == kind
    shown = tier.url if kind == "RedisTier" else tier.dialect  # type: ignore[attr-defined]
    assert where.startswith(shown) if kind == "SQLTier" else shown.startswith(where)


def test_postgres_driver_options_pass_through(postgres_url: str) -> None:
    """PostgreSQL's own query parameters reach the driver; ours become tier options."""
    cache = sc.Cache.from_url(postgres_url + "&ttl=60&table=cfg_entries", namespace="cfg")
    tier = cache.tiers.slots[0].tier
    assert tier.ttl == 60.0 and tier.store.table == "cfg_entries"  # type: ignore[attr-defined]
    cache.sync.set("k", 1)
    assert cache.sync.get("k") == 1
    cache.sync.close()
    import sqlalchemy

    engine = sqlalchemy.create_engine(postgres_url)  # the same search_path option
    with engine.connect() as conn:  # the table went to the schema the options named
        assert conn.execute(sqlalchemy.text("SELECT to_regclass('cfg_entries')")).scalar()
    engine.dispose()


OPTION_NAMES = [
    "namespace",
    "default_ttl",
    "refresh_after",
    "stale_ttl",
    "jitter",
    "early_refresh_beta",
    "cache_none",
    "max_key_length",
    "breaker_threshold",
    "breaker_reset",
    "bus",
    "lock",
]


@settings(max_examples=300, deadline=None)
@given(option=st.sampled_from(OPTION_NAMES), text=st.text(max_size=12))
def test_any_environment_text_builds_or_is_a_config_error(option: str, text: str) -> None:
    """Whatever text a STRATACACHE_* variable holds, the result is a cache or a ConfigError."""
    environ = {"STRATACACHE_URL": "memory://", "STRATACACHE_" + option.upper(): text}
    with contextlib.suppress(sc.ConfigError):
        sc.Cache.from_env(environ)


@settings(max_examples=300, deadline=None)
@given(
    option=st.sampled_from(["maxsize", "ttl", "max_bytes", "name", "other"]),
    text=st.text(max_size=12),
)
def test_any_memory_option_text_builds_or_is_a_config_error(option: str, text: str) -> None:
    """Whatever a memory:// option holds, the result is a cache or a ConfigError."""
    with contextlib.suppress(sc.ConfigError):
        sc.Cache.from_url("memory://?" + urlencode({option: text}))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"envelopes": ["x"]}, "envelopes"),
        ({"envelopes": "x"}, "envelopes"),
        ({"serializer": "json"}, "serializer"),
        ({"clock": "x"}, "clock"),
        ({"bus": "sometimes"}, "bus"),
    ],
)
def test_plugins_and_switches_are_checked_where_the_cache_is_built(
    options: dict[str, Any], named: str
) -> None:
    """A plug-in that would only fail inside every call is a ConfigError naming the option."""
    with pytest.raises(sc.ConfigError, match=named):
        sc.Cache.from_url("memory://", **options)


def test_sql_bounds_are_url_options(tmp_path: Any) -> None:
    """max_entries/max_bytes/pool_size reach the SQL tier from the URL; unknown ones are refused."""
    cache = sc.Cache.from_url(f"sqlite:///{tmp_path / 'b.db'}?max_entries=5&max_bytes=4096")
    tier: Any = cache.tiers.slots[0].tier
    assert (tier.max_entries, tier.max_bytes) == (5, 4096)
    timed: Any = sc.Cache.from_url(f"sqlite:///{tmp_path / 'd.db'}?lock_timeout=100ms")
    assert timed.tiers.slots[0].tier.lock.timeout == 0.1
    with pytest.raises(sc.ConfigError, match="workers"):
        sc.Cache.from_url(f"sqlite:///{tmp_path / 'c.db'}?workers=2")

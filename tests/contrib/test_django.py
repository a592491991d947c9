"""The Django CACHES backend on real Redis and PostgreSQL: Django's cache API, cache_page, sessions,
template fragments and model signals as invalidation rules, through Django's test client."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

django = pytest.importorskip("django")

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402

SCHEMA = f"sc_django_{os.getpid()}_{uuid.uuid4().hex[:8]}"
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="stratacache-tests",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="tests.contrib.djapp.urls",
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "tests.contrib.djapp.apps.DjappConfig",
        ],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "test",
                "USER": "postgres",
                "HOST": "127.0.0.1",
                "PORT": "5432",
                "OPTIONS": {"options": f"-c search_path={SCHEMA}"},
            }
        },
        CACHES={"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}},
        SESSION_ENGINE="django.contrib.sessions.backends.cache",
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
        USE_TZ=True,
    )
    django.setup()

from django.core.cache import cache as default_cache  # noqa: E402
from django.core.cache import caches  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from tests.contrib.djapp import urls  # noqa: E402
from tests.contrib.djapp.models import Product  # noqa: E402

import stratacache as sc  # noqa: E402
from stratacache.contrib.django import (  # noqa: E402
    StratacacheBackend,
    close_all,
    invalidate_on_save,
)

BACKEND = "stratacache.contrib.django.StratacacheBackend"


@pytest.fixture(scope="module")
def product_table() -> Iterator[None]:
    """The Product table in a private PostgreSQL schema (dropped after)."""
    with psycopg.connect(**PG, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f'CREATE SCHEMA "{SCHEMA}"')
    with connection.schema_editor() as editor:
        editor.create_model(Product)
    yield
    connection.close()
    with psycopg.connect(**PG, autocommit=True) as conn:  # type: ignore[arg-type]
        conn.execute(f'DROP SCHEMA "{SCHEMA}" CASCADE')


@pytest.fixture(params=["memory+redis", "memory+redis+postgres"])
def location(request: pytest.FixtureRequest) -> str:
    """LOCATION strings: memory over real Redis, and memory over Redis over PostgreSQL."""
    parts = ["memory://", request.getfixturevalue("redis_url")]
    if request.param.endswith("postgres"):
        parts.append(request.getfixturevalue("postgres_url"))
    return ",".join(parts)


@pytest.fixture
def backend(location: str) -> Iterator[Any]:
    """``django.core.cache.cache`` on the stratacache backend."""
    caches_setting = {
        "default": {
            "BACKEND": BACKEND,
            "LOCATION": location,
            "KEY_PREFIX": f"t{uuid.uuid4().hex[:6]}",
        },
        "other": {"BACKEND": BACKEND, "LOCATION": location, "KEY_PREFIX": "other", "VERSION": 2},
        "custom": {
            "BACKEND": BACKEND,
            "LOCATION": location,
            "KEY_FUNCTION": lambda key, prefix, version: f"CUSTOM-{prefix}-{version}-{key}",
        },
    }
    with override_settings(CACHES=caches_setting):
        default_cache.clear()
        yield default_cache
    close_all()


def test_is_the_backend(backend: Any) -> None:
    """django.core.cache.cache is a StratacacheBackend over the configured tiers."""
    assert isinstance(caches["default"], StratacacheBackend)
    assert [s.name for s in caches["default"].cache.tiers.slots][:2] == ["memory", "redis"]


def test_basic_operations(backend: Any) -> None:
    """get/set/add/delete/has_key/get_many/set_many/delete_many/clear as Django defines them."""
    backend.set("key", "value")
    assert backend.get("key") == "value"
    assert backend.get("missing") is None and backend.get("missing", "dflt") == "dflt"
    assert backend.add("key", "new") is False and backend.get("key") == "value"
    assert backend.add("fresh", 1) is True and backend.get("fresh") == 1
    assert backend.has_key("key") and "key" in backend and not backend.has_key("nope")
    assert backend.delete("key") is True and backend.delete("key") is False
    assert backend.get("key") is None
    assert backend.set_many({"a": 1, "b": [1, 2], "c": {"x": None}}) == []
    assert backend.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": [1, 2], "c": {"x": None}}
    backend.delete_many(["a", "b"])
    assert backend.get_many(["a", "b", "c"]) == {"c": {"x": None}}
    backend.set("none", None)
    assert backend.get("none", "dflt") is None  # a stored None is a hit
    assert backend.get_or_set("gos", lambda: 7) == 7 and backend.get_or_set("gos", 8) == 7
    backend.set("key with spaces", 1)
    assert backend.get("key with spaces") == 1
    backend.clear()
    assert backend.get("c") is None and backend.get("fresh") is None


async def test_async_api(backend: Any) -> None:
    """Django's async methods (aget/aset/aadd/aincr/adelete) work on the backend."""
    await backend.aset("ak", {"v": 1})
    assert await backend.aget("ak") == {"v": 1}
    assert await backend.aadd("ak", 2) is False
    await backend.aset("an", 1)
    assert await backend.aincr("an", 2) == 3
    assert await backend.adelete("ak") is True and await backend.aget("ak") is None


def test_text_options(location: str) -> None:
    """OPTIONS accept the text forms of the configuration page ("5m", "false")."""
    setting = {
        "BACKEND": BACKEND,
        "LOCATION": location,
        "KEY_PREFIX": "txt",
        "OPTIONS": {"stale_ttl": "5m", "cache_none": "false"},
    }
    with override_settings(CACHES={"default": setting}):
        policy = caches["default"].cache.policy
        assert policy.stale_ttl == 300.0 and policy.cache_none is False
    close_all()


def test_django_expectations(backend: Any) -> None:
    """Cases from Django's own cache tests: data types, unicode, binary, float/long timeouts."""
    import zlib

    stuff = {
        "string": "this is a string",
        "int": 42,
        "bool": True,
        "list": [1, 2, 3, 4],
        "tuple": (1, 2, 3, 4),
        "dict": {"A": 1, "B": 2},
    }
    backend.set("stuff", stuff)
    assert backend.get("stuff") == stuff
    for key, value in {
        "ascii": "ascii_value",
        "Iñtërnâtiônàlizætiøn": "Iñtërnâtiônàlizætiøn2",
        "ascii2": {"x": 1},
    }.items():
        backend.set(key, value)
        assert backend.get(key) == value
        assert backend.delete(key) is True
        assert backend.add(key, value) is True and backend.get(key) == value
    compressed = zlib.compress(b"value to be compressed")
    backend.set("binary1", compressed)
    assert zlib.decompress(backend.get("binary1")) == b"value to be compressed"
    backend.set("float", "spam", 100.2)
    backend.set("long", "ham", 60 * 60 * 24 * 365 * 10)
    assert backend.get("float") == "spam" and backend.get("long") == "ham"
    backend.set("null", None)
    with pytest.raises(TypeError):
        backend.incr("null")
    assert backend.get_or_set("brian", 1979, version=2) == 1979
    with pytest.raises(ValueError):
        backend.incr_version("does_not_exist")


def test_expiration(backend: Any, wait_until: Any) -> None:
    """A short timeout expires (polled, no sleeps); add then succeeds on the expired key."""
    backend.set("expire1", "very quickly", 0.05)
    wait_until(lambda: backend.get("expire1") is None, what="expire1 to expire")
    assert backend.has_key("expire1") is False
    assert backend.add("expire1", "newvalue") is True and backend.get("expire1") == "newvalue"


def test_incr_decr(backend: Any) -> None:
    """incr/decr change ints atomically; a missing key is a ValueError."""
    backend.set("n", 10)
    assert backend.incr("n") == 11 and backend.incr("n", 10) == 21
    assert backend.decr("n") == 20 and backend.decr("n", 10) == 10
    assert backend.get("n") == 10
    with pytest.raises(ValueError):
        backend.incr("does_not_exist")
    with pytest.raises(ValueError):
        backend.decr("does_not_exist")
    assert backend.get("does_not_exist") is None


def test_timeouts(backend: Any) -> None:
    """timeout=None is forever, 0 (or negative) does not cache, touch changes the lifetime."""
    backend.set("forever", 1, timeout=None)
    assert caches["default"].sync.ttl("1:forever") == float("inf")
    backend.set("zero", 1, timeout=0)
    assert backend.get("zero") is None
    backend.set("gone", 1)
    backend.set("gone", 2, timeout=-1)
    assert backend.get("gone") is None
    assert backend.add("zero_add", 1, timeout=0) is True and backend.get("zero_add") is None
    backend.set("t", 1, timeout=10)
    assert backend.touch("t", 1000) is True
    assert 10 < caches["default"].sync.ttl("1:t") <= 1000
    assert backend.touch("t", None) is True
    assert caches["default"].sync.ttl("1:t") == float("inf")
    assert backend.touch("absent") is False
    assert backend.touch("t", 0) is True and backend.get("t") is None
    backend.set_many({"m1": 1, "m2": 2}, timeout=0)
    assert backend.get_many(["m1", "m2"]) == {}


def test_versions(backend: Any) -> None:
    """Versions separate keys; incr_version/decr_version move a value."""
    backend.set("answer", 42, version=1)
    backend.set("answer", 43, version=2)
    assert backend.get("answer") == 42 and backend.get("answer", version=2) == 43
    assert backend.incr_version("answer") == 2
    assert backend.get("answer", version=2) == 42 and backend.get("answer") is None
    assert backend.decr_version("answer", version=2) == 1
    assert backend.get("answer") == 42
    other = caches["other"]
    other.set("v", "two")
    assert other.get("v") == "two" and other.get("v", version=1) is None


def test_key_function_and_prefix(backend: Any) -> None:
    """KEY_FUNCTION builds keys; KEY_PREFIX is the namespace (separate caches)."""
    custom = caches["custom"]
    assert custom.make_key("k") == "CUSTOM--1-k"
    custom.set("k", "custom")
    assert custom.get("k") == "custom" and backend.get("k") is None
    assert caches["other"].cache.namespace == "other"


def test_bad_values_and_keys_are_clear_errors(backend: Any) -> None:
    """An unserializable value or a key no tier can store raises a stratacache error at the call."""
    with pytest.raises(sc.SerializationError):
        backend.set("obj", object())
    with pytest.raises(sc.CacheKeyError):
        backend.set("file:\udcff", 1)
    stats = caches["default"].cache.stats()["tiers"]
    assert all(t["errors"] == 0 for t in stats.values())


def test_long_keys_are_accepted_and_stay_distinct(backend: Any) -> None:
    """Keys past max_key_length are shortened with a digest: usable by every call, never mixed."""
    a, b = "k" * 5000, "k" * 4999 + "j"
    backend.set(a, 1)
    backend.set(b, 2)
    assert backend.get(a) == 1 and backend.get(b) == 2
    assert backend.get_many([a, b]) == {a: 1, b: 2}
    assert backend.incr(a, 5) == 6 and backend.touch(a, 60) and backend.has_key(a)
    assert backend.delete(a) and backend.get(a) is None and backend.get(b) == 2
    assert len(backend.make_key(a)) == backend.cache.max_key_length


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ({"LOCATION": "ftp://x"}, "ftp"),
        ({"LOCATION": "memory://?maxsize=x"}, "maxsize"),
        ({"LOCATION": "memory://", "KEY_PREFIX": "a:b"}, "KEY_PREFIX"),
        ({"LOCATION": "memory://", "TIMEOUT": "300"}, "TIMEOUT"),
        ({"LOCATION": "memory://", "OPTIONS": {"MAX_ENTRIES": 10}}, "MAX_ENTRIES"),
        ({"LOCATION": "memory://", "OPTIONS": {"jitter": 3}}, "jitter"),
    ],
)
def test_bad_settings_are_config_errors(setting: dict[str, Any], named: str) -> None:
    """A bad CACHES entry fails with a ConfigError naming the setting."""
    bad = {"bad": {"BACKEND": BACKEND, **setting}}
    with override_settings(CACHES=bad), pytest.raises(sc.ConfigError, match=named):
        caches["bad"]


def test_cache_page(backend: Any) -> None:
    """cache_page serves the second request from the stratacache backend, headers included."""
    client = Client()
    before = urls.CALLS["page"]
    first = client.get("/page/")
    second = client.get("/page/")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert second["X-Extra"] == "yes" and second["Content-Type"] == "text/plain"
    assert urls.CALLS["page"] == before + 1


def test_cache_page_keys_on_the_query_and_replays_json(backend: Any) -> None:
    """cache_page keeps one page per query string and replays a JsonResponse's status and type."""
    client = Client()
    before = urls.CALLS["search"]
    a, b, again = client.get("/search/?q=a"), client.get("/search/?q=b"), client.get("/search/?q=a")
    assert (a.json()["q"], b.json()["q"]) == ("a", "b")
    assert again.json() == a.json() and again.status_code == 200
    assert again["Content-Type"] == "application/json"
    assert urls.CALLS["search"] == before + 2


def test_sessions(backend: Any) -> None:
    """The cache session engine keeps a session across requests on this backend."""
    client = Client()
    assert [client.get("/visits/").json()["n"] for _ in range(3)] == [1, 2, 3]
    assert Client().get("/visits/").json()["n"] == 1  # another client, another session


def test_template_fragment(backend: Any) -> None:
    """{% cache %} stores the rendered fragment and serves it unescaped."""
    client = Client()
    first = client.get("/fragment/").content
    second = client.get("/fragment/").content
    assert first == second and first.startswith(b"<b>")


def test_model_signals_invalidate(backend: Any, product_table: None) -> None:
    """Saving or deleting a model instance invalidates its tag, after the commit."""
    cache = caches["default"].cache
    receiver = invalidate_on_save(Product, tags=["product:{pk}"], keys=["name:{name}"])
    try:
        product = Product.objects.create(name="tea")
        cache.sync.set("page", "old", tags=[f"product:{product.pk}"])
        cache.sync.set("name:tea", "old")
        with transaction.atomic():
            product.name = "tea"
            product.save()
            assert cache.sync.get("page") == "old"  # not before the commit
        assert cache.sync.get("page") is None and cache.sync.get("name:tea") is None
        cache.sync.set("page", "again", tags=[f"product:{product.pk}"])
        product.delete()
        assert cache.sync.get("page") is None
    finally:
        from django.db.models.signals import post_delete, post_save

        post_save.disconnect(receiver, sender=Product)
        post_delete.disconnect(receiver, sender=Product)


def test_invalidate_on_save_needs_templates() -> None:
    """No template, or a single string, is a ConfigError."""
    with pytest.raises(sc.ConfigError):
        invalidate_on_save(Product)
    with pytest.raises(sc.ConfigError):
        invalidate_on_save(Product, tags="product:{pk}")

"""The Flask extension on a real waitress server: config from app.config, decorator, page cache."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from flask import Flask, request
from tests.servers import waitress_server
from werkzeug.middleware.proxy_fix import ProxyFix

import stratacache as sc
from stratacache.contrib.flask import Stratacache


def make_app(redis_url: str, **config: Any) -> tuple[Flask, Stratacache, list[int]]:
    """A Flask app whose /users/<uid> view is cached with the extension's decorator."""
    app = Flask("shop")
    app.config.update(
        STRATACACHE_URL=f"memory://?maxsize=100,{redis_url}",
        STRATACACHE_NAMESPACE=f"fl{uuid.uuid4().hex[:8]}",
        STRATACACHE_DEFAULT_TTL="5m",
        **config,
    )
    ext = Stratacache()
    calls: list[int] = []

    @app.get("/users/<int:uid>")
    @ext.cached(ttl=60, key="user:{uid}", unless=lambda r: r.get("missing"))
    def user(uid: int) -> dict[str, Any]:
        calls.append(uid)
        return {"missing": True} if uid == 0 else {"id": uid}

    @app.get("/page")
    def page() -> tuple[str, int, dict[str, str]]:
        calls.append(-1)
        return f"page {len(calls)}", 200, {"Cache-Control": "public, max-age=60"}

    ext.init_app(app)  # the factory pattern: decorator applied before init_app
    return app, ext, calls


def test_extension_caches_through_waitress(redis_url: str) -> None:
    """Decorated views are computed once per key; unless= keeps a 'missing' result out."""
    app, ext, calls = make_app(redis_url)
    assert ext.cache.policy.ttl == 300.0 and [s.name for s in ext.cache.tiers.slots] == [
        "memory",
        "redis",
    ]
    with waitress_server(app) as base, httpx.Client(base_url=base) as client:
        assert [client.get("/users/1").json() for _ in range(3)] == [{"id": 1}] * 3
        assert [client.get("/users/0").json() for _ in range(2)] == [{"missing": True}] * 2
    assert calls == [1, 0, 0]
    stored = ext.cache.sync.get("user:1")  # a view: the page is stored whole
    assert stored["s"] == 200 and json.loads(stored["b"]) == {"id": 1}
    ext.close()


def test_page_cache_from_config(redis_url: str) -> None:
    """STRATACACHE_PAGE_CACHE wraps the app in the WSGI page cache (X-Cache MISS then HIT)."""
    app, ext, calls = make_app(redis_url, STRATACACHE_PAGE_CACHE=True)
    with waitress_server(app) as base, httpx.Client(base_url=base) as client:
        first, second = client.get("/page"), client.get("/page")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert first.text == second.text and calls == [-1]
    ext.close()


def test_page_cache_goes_inside_a_proxy_fix(redis_url: str) -> None:
    """A ProxyFix already on app.wsgi_app stays outside the page cache: the key holds the
    forwarded host the app builds its pages from, so two tenants never share a page."""
    app = Flask("tenants")
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1, x_proto=1, x_host=1)  # type: ignore[method-assign]
    app.config.update(
        STRATACACHE_URL=f"memory://?maxsize=100,{redis_url}",
        STRATACACHE_NAMESPACE=f"pf{uuid.uuid4().hex[:8]}",
        STRATACACHE_PAGE_CACHE=True,
    )
    ext = Stratacache(app)

    @app.get("/")
    def home() -> tuple[str, int, dict[str, str]]:
        return f"welcome to {request.host}", 200, {"cache-control": "max-age=60"}

    assert isinstance(app.wsgi_app, ProxyFix)
    proxy = {"host": "app:8000", "x-forwarded-proto": "https"}
    # in process: waitress drops X-Forwarded-* from peers it does not trust
    transport = httpx.WSGITransport(app=app)
    with httpx.Client(transport=transport, base_url="http://app:8000") as client:
        pages = [
            client.get("/", headers={**proxy, "x-forwarded-host": tenant})
            for tenant in ("a.example", "b.example", "b.example")
        ]
    texts = [p.text for p in pages]
    assert texts == ["welcome to a.example", "welcome to b.example", "welcome to b.example"]
    assert [p.headers["x-cache"] for p in pages] == ["MISS", "MISS", "HIT"]
    ext.close()


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"STRATACACHE_URL": "ftp://x"}, "ftp"),
        ({"STRATACACHE_DEFAULT_TTL": "soon"}, "STRATACACHE_DEFAULT_TTL"),
        ({"STRATACACHE_CACHE_NONE": "perhaps"}, "STRATACACHE_CACHE_NONE"),
        ({"STRATACACHE_NAMESPACE": "a:b"}, "namespace"),
    ],
)
def test_bad_config_is_a_named_config_error(config: dict[str, Any], named: str) -> None:
    """A bad app.config value fails init_app with a ConfigError naming it."""
    app = Flask("bad")
    app.config.update(config)
    with pytest.raises(sc.ConfigError, match=named):
        Stratacache(app)


def test_cache_before_init_app_is_a_config_error() -> None:
    """Using ext.cache before any init_app says what to do."""
    with pytest.raises(sc.ConfigError, match="init_app"):
        _ = Stratacache().cache

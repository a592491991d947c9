"""The admin API served by a real uvicorn on loopback over memory + Redis, at / and mounted."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.routing import Mount

import stratacache as sc
from stratacache.admin import AdminAction, AdminAPI
from stratacache.core.errors import ConfigError
from stratacache.core.fleet import Invalidation

from .serving import serve

TOKEN = "admin-token-0123456789"
READ = "read-token-0123456789"
MOUNTS = ["", "/admin/cache"]


@dataclass
class Served:
    """A running admin API: its base URL, cache and what reached the audit hooks."""

    base: str
    cache: sc.Cache
    redis_url: str
    actions: list[AdminAction] = field(default_factory=list)
    invalidations: list[Invalidation] = field(default_factory=list)

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=10)

    def seed(self, entries: dict[str, Any], tags: dict[str, list[str]] | None = None) -> None:
        """Write entries through a second cache on the same Redis (the served one has its loop)."""
        seeder = sc.Cache([sc.RedisTier(url=self.redis_url)], namespace="adm")
        with seeder.sync as sync:
            for key, value in entries.items():
                sync.set(key, value, tags=(tags or {}).get(key, []))

    def remaining(self, keys: list[str]) -> dict[str, Any]:
        reader = sc.Cache([sc.RedisTier(url=self.redis_url)], namespace="adm")
        with reader.sync as sync:
            return sync.get_many(keys)


def build(redis_url: str, served: Served | None = None, **options: Any) -> AdminAPI:
    cache = sc.Cache([sc.MemoryTier(), sc.RedisTier(url=redis_url)], namespace="adm")

    @cache.cached(ttl=60, key="double:{x}", warm=[1, 2, 3])
    async def double(x: int) -> int:
        return 2 * x

    hooks = [served.actions.append] if served is not None else None
    options.setdefault("token", TOKEN)
    options.setdefault("read_token", READ)
    api = AdminAPI(cache, audit=hooks, **options)
    if served is not None:
        served.cache = cache
        cache.audit_hooks.append(served.invalidations.append)
    return api


def mounted(api: AdminAPI, mount: str) -> Any:
    """``api`` alone, or mounted under ``mount`` in a host Starlette app (cache started by hand)."""
    if not mount:
        return api
    return Starlette(routes=[Mount(mount, app=api)])


@pytest.fixture(params=MOUNTS, ids=["root", "mounted"])
def served(request: pytest.FixtureRequest, redis_url: str) -> Iterator[Served]:
    """The admin API served at / or under /admin/cache."""
    mount = request.param
    state = Served("", None, redis_url)  # type: ignore[arg-type]
    api = build(redis_url, state)
    with serve(mounted(api, mount)) as port:
        state.base = f"http://127.0.0.1:{port}{mount}"
        yield state


# -- construction ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"token": "short"},
        {"read_token": "short"},
        {"token": TOKEN, "read_token": TOKEN},
    ],
    ids=["no-token", "short-admin", "short-read", "same-tokens"],
)
def test_unsafe_configurations_are_refused(options: dict[str, Any]) -> None:
    """No token (without allow_anonymous), short tokens and one token for both scopes fail."""
    cache = sc.Cache([sc.MemoryTier()], namespace="adm")
    with pytest.raises(ConfigError):
        AdminAPI(cache, **options)


# -- open routes ------------------------------------------------------------------------------
def test_health_and_openapi_need_no_token(served: Served) -> None:
    """/health and /openapi.json answer without a token; the document is valid OpenAPI."""
    client = served.client(None)
    assert client.get("/health").json() == {"status": "ok", "namespace": "adm"}
    document = client.get("/openapi.json").json()
    validate(document)
    mount = httpx.URL(served.base).path.rstrip("/")
    assert document["servers"] == [{"url": mount or "/"}]
    assert {"/stats", "/keys", "/entries/{key}", "/invalidate", "/warm", "/flush"} <= set(
        document["paths"]
    )


def test_dashboard_is_served_as_html(served: Served) -> None:
    """GET / returns the dashboard page."""
    response = served.client(None).get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "stratacache" in response.text


# -- read routes ------------------------------------------------------------------------------
def test_stats_has_tiers_breakers_and_bus(served: Served, wait_until: Any) -> None:
    """GET /stats returns the counters plus breaker and bus state (the default bus on the
    cache's Redis, once subscribed), with the read token."""
    data = served.client(READ).get("/stats").json()
    assert data["namespace"] == "adm" and set(data["tiers"]) == {"memory", "redis"}
    assert data["breakers"] == {"memory": "closed", "redis": "closed"}
    assert data["bus"]["configured"] is True

    def connected() -> bool:
        return served.client(READ).get("/stats").json()["bus"] == {
            "configured": True,
            "connected": True,
        }

    wait_until(connected, timeout=10, what="the default bus subscribed")


def test_metrics_parse_back(served: Served) -> None:
    """GET /metrics is Prometheus text that prometheus-client parses, with this namespace."""
    response = served.client(READ).get("/metrics")
    assert response.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(response.text)}
    hits = families["stratacache_tier_hits"]
    assert {s.labels["tier"] for s in hits.samples} == {"memory", "redis"}
    assert {s.labels["namespace"] for s in hits.samples} == {"adm"}


def test_keys_pages_through_redis_with_a_cursor(served: Served) -> None:
    """GET /keys lists every key under a prefix once, page by page, within the limit."""
    served.seed({f"user:{i}": i for i in range(25)} | {"other": 0})
    client = served.client(READ)
    seen: list[str] = []
    cursor: str | None = ""
    pages = 0
    while cursor is not None:
        params = {"prefix": "user:", "limit": "10", **({"cursor": cursor} if cursor else {})}
        page = client.get("/keys", params=params).json()
        assert page["tier"] == "redis"
        seen.extend(page["keys"])
        cursor = page["cursor"]
        pages += 1
    assert sorted(set(seen)) == sorted(f"user:{i}" for i in range(25))
    assert pages >= 2


@pytest.mark.parametrize(
    "params", [{"limit": "0"}, {"limit": "x"}, {"limit": "5000"}, {"cursor": "nope"}, {"tier": "z"}]
)
def test_keys_rejects_bad_parameters(served: Served, params: dict[str, str]) -> None:
    """Bad limits, cursors and tier names are 400 problems."""
    response = served.client(READ).get("/keys", params=params)
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 400


def test_entry_shows_each_tier_and_the_value_only_to_admin(served: Served) -> None:
    """GET /entries/{key} tells TTL, tags, size and age per tier; ?value=1 needs admin."""
    served.seed({"user:1": {"name": "ada"}}, tags={"user:1": ["org:1"]})
    data = served.client(READ).get("/entries/user:1").json()
    assert data["tiers"]["memory"] == {"present": False}
    redis = data["tiers"]["redis"]
    assert redis["present"] and redis["tags"] == ["org:1"] and redis["size"] > 0
    assert 0 < redis["expires_in"] <= 300 and redis["age"] >= 0
    assert "value" not in data
    assert served.client(READ).get("/entries/user:1", params={"value": "1"}).status_code == 403
    full = served.client().get("/entries/user:1", params={"value": "1"}).json()
    assert full["value"] == {"name": "ada"}
    assert served.client(READ).get("/entries/nothing").status_code == 404


# -- mutations --------------------------------------------------------------------------------
def test_delete_entry_removes_it_and_is_audited(served: Served) -> None:
    """DELETE /entries/{key} removes the key; audit hooks get the actor as its own field."""
    served.seed({"user:1": 1, "user:2": 2})
    response = served.client().delete("/entries/user:1", params={"reason": "gdpr"})
    assert response.status_code == 200
    assert served.remaining(["user:1", "user:2"]) == {"user:2": 2}
    [action] = served.actions
    assert action.action == "delete" and action.result == "ok" and action.reason == "gdpr"
    assert action.actor.startswith("admin-token@127.0.0.1")
    [message] = served.invalidations
    assert message.actor == action.actor and message.reason == "gdpr"


def test_invalidate_by_tag_key_and_prefix(served: Served) -> None:
    """POST /invalidate removes exactly the tagged, named and prefixed entries."""
    served.seed({"user:1": "u1", "user:2": "u2", "report:a": "ra"}, tags={"user:1": ["org:1"]})
    keys = ["user:1", "user:2", "report:a"]
    client = served.client()
    assert client.post("/invalidate", json={"tags": ["org:1"], "reason": "t"}).status_code == 200
    assert served.remaining(keys) == {"user:2": "u2", "report:a": "ra"}
    client.post("/invalidate", json={"keys": ["user:2"], "prefix": "report:"})
    assert served.remaining(keys) == {}
    assert [a.action for a in served.actions] == ["invalidate", "invalidate"]
    assert all(m.actor and "@127.0.0.1" in m.actor for m in served.invalidations)


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"keys": "user:1"}', b'{"nope": 1}', b"{}", b'{"keys": [1]}', b"[]"],
)
def test_bad_bodies_are_problems_and_invalidate_nothing(served: Served, body: bytes) -> None:
    """Malformed JSON, wrong types, unknown fields and empty requests are 400 problems."""
    served.seed({"user:1": 1})
    response = served.client().post(
        "/invalidate", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["title"] == "Bad Request" and problem["detail"]
    assert served.remaining(["user:1"]) == {"user:1": 1}
    assert served.actions == []


def test_oversized_body_is_413(served: Served) -> None:
    """A body past the limit is refused with 413 before it is parsed."""
    response = served.client().post("/invalidate", json={"keys": ["k" * 1000] * 100})
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


def test_warm_runs_named_warmers(served: Served) -> None:
    """GET /warmers names the warmers; POST /warm runs them and fills Redis."""
    client = served.client()
    [name] = client.get("/warmers").json()["warmers"]
    assert name.endswith("double")
    assert client.post("/warm", json={"warmers": ["nope"]}).status_code == 400
    summary = client.post("/warm", json={"warmers": [name], "reason": "deploy"}).json()
    assert summary["warmed"] == 3 and summary["failed"] == 0
    assert served.remaining(["double:1", "double:3"]) == {"double:1": 2, "double:3": 6}
    assert served.actions[-1].action == "warm" and served.actions[-1].reason == "deploy"


def test_flush_needs_confirmation(served: Served) -> None:
    """POST /flush refuses without confirm=true and empties the namespace with it."""
    served.seed({"a": 1, "b": 2})
    client = served.client()
    assert client.post("/flush", json={}).status_code == 400
    assert client.post("/flush", json={"confirm": False}).status_code == 400
    assert served.remaining(["a", "b"]) == {"a": 1, "b": 2}
    assert client.post("/flush", json={"confirm": True, "reason": "reset"}).status_code == 200
    assert served.remaining(["a", "b"]) == {}
    assert served.invalidations[-1].clear and served.invalidations[-1].reason == "reset"
    assert [(a.action, a.result) for a in served.actions] == [("flush", "ok")]


def test_unknown_routes_and_methods_are_problems(served: Served) -> None:
    """Unknown paths are 404 and wrong methods 405, as problem documents."""
    client = served.client()
    for method, path, status in (("GET", "/nope", 404), ("GET", "/flush", 405)):
        response = client.request(method, path)
        assert response.status_code == status
        assert response.headers["content-type"] == "application/problem+json"


# -- auth failures ----------------------------------------------------------------------------
READ_ROUTES = [("GET", "/stats"), ("GET", "/metrics"), ("GET", "/keys"), ("GET", "/warmers"),
               ("GET", "/entries/k")]  # fmt: skip
ADMIN_ROUTES = [("DELETE", "/entries/k"), ("POST", "/invalidate"), ("POST", "/warm"),
                ("POST", "/flush"), ("GET", "/entries/k?value=1")]  # fmt: skip


@pytest.mark.parametrize("method,path", READ_ROUTES + ADMIN_ROUTES)
def test_every_protected_route_refuses_missing_and_wrong_tokens(
    served: Served, method: str, path: str
) -> None:
    """No token, a wrong token and a non-bearer header get 401 with WWW-Authenticate."""
    served.seed({"k": 1})
    body = {"keys": ["k"]} if path == "/invalidate" else {"confirm": True}
    for headers in ({}, {"Authorization": "Bearer wrong-token-xxxxxxxx"}, {"Authorization": TOKEN}):
        client = httpx.Client(base_url=served.base, headers=headers, timeout=10)
        kwargs: dict[str, Any] = {"json": body} if method == "POST" else {}
        response = client.request(method, path, **kwargs)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"
    assert served.remaining(["k"]) == {"k": 1}
    assert served.actions == []


@pytest.mark.parametrize("method,path", ADMIN_ROUTES)
def test_read_token_is_refused_on_admin_routes(served: Served, method: str, path: str) -> None:
    """The read token gets 403 on every admin route and changes nothing."""
    served.seed({"k": 1})
    body = {"keys": ["k"]} if path == "/invalidate" else {"confirm": True}
    kwargs: dict[str, Any] = {"json": body} if method == "POST" else {}
    response = served.client(READ).request(method, path, **kwargs)
    assert response.status_code == 403
    assert served.remaining(["k"]) == {"k": 1}


@pytest.mark.parametrize("method,path", READ_ROUTES)
def test_read_token_opens_read_routes(served: Served, method: str, path: str) -> None:
    """The read token is enough for every read route."""
    served.seed({"k": 1})
    assert served.client(READ).request(method, path).status_code == 200


def test_anonymous_api_answers_loopback_only(redis_url: str) -> None:
    """allow_anonymous=True: loopback clients get the admin scope, others get 403."""
    api = build(redis_url, token=None, read_token=None, allow_anonymous=True)
    outside = _non_loopback_address()
    with serve(api, host="0.0.0.0") as port:
        local = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        assert local.get("/stats").status_code == 200
        assert local.post("/invalidate", json={"keys": ["k"]}).status_code == 200
        if outside is None:
            pytest.skip("no non-loopback address on this host")
        remote = httpx.Client(base_url=f"http://{outside}:{port}", timeout=10)
        for method, path in [("GET", "/"), ("GET", "/health"), *READ_ROUTES, *ADMIN_ROUTES]:
            response = remote.request(method, path)
            assert response.status_code == 403, (path, response.text)


def _non_loopback_address() -> str | None:
    import socket

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


def test_documented_openapi_copy_is_current() -> None:
    """docs/openapi.json is the document the API serves (regenerate it when routes change)."""
    import json
    from pathlib import Path

    cache = sc.Cache([sc.MemoryTier()], namespace="shop")
    served = AdminAPI(cache, token=TOKEN).openapi_document("/")
    documented = json.loads(
        (Path(__file__).resolve().parents[2] / "docs" / "openapi.json").read_text()
    )
    assert documented["paths"] == served["paths"]
    assert documented["components"] == served["components"]


def test_warm_streams_progress_as_ndjson(served: Served) -> None:
    """With Accept: application/x-ndjson, /warm sends the total, progress, then the summary."""
    import json

    client = served.client()
    response = client.post(
        "/warm", json={"reason": "deploy"}, headers={"Accept": "application/x-ndjson"}
    )
    assert response.headers["content-type"].startswith("application/x-ndjson")
    events = [json.loads(line) for line in response.text.splitlines() if line]
    assert events[0] == {"total": 3}
    assert events[-1]["summary"]["warmed"] == 3
    assert all(0 < e["done"] <= 3 for e in events[1:-1])
    assert [a.action for a in served.actions] == ["warm"]
    assert served.remaining(["double:2"]) == {"double:2": 4}


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-hook", "async-hook"])
def test_sql_table_invalidation_route_calls_the_hook(redis_url: str, asynchronous: bool) -> None:
    """POST /sql/invalidate-tables exists with table_invalidator= and hands it the tables."""
    called: list[list[str]] = []

    def sync_hook(tables: list[str]) -> None:
        called.append(tables)

    async def async_hook(tables: list[str]) -> None:
        called.append(tables)

    state = Served("", None, redis_url)  # type: ignore[arg-type]
    api = build(redis_url, state, table_invalidator=async_hook if asynchronous else sync_hook)
    with serve(api) as port:
        state.base = f"http://127.0.0.1:{port}"
        client = state.client()
        assert "/sql/invalidate-tables" in client.get("/openapi.json").json()["paths"]
        body = {"tables": ["orders", "users"], "reason": "backfill"}
        assert state.client(READ).post("/sql/invalidate-tables", json=body).status_code == 403
        assert client.post("/sql/invalidate-tables", json={"tables": []}).status_code == 400
        response = client.post("/sql/invalidate-tables", json=body)
        assert response.status_code == 200, response.text
    assert called == [["orders", "users"]]
    [action] = state.actions
    assert (action.action, action.target, action.reason) == (
        "invalidate_tables",
        {"tables": ["orders", "users"]},
        "backfill",
    )


def test_sql_table_route_is_absent_without_a_hook(served: Served) -> None:
    """Without table_invalidator= the route is a 404 and not in the document."""
    assert served.client().post("/sql/invalidate-tables", json={"tables": ["t"]}).status_code == 404
    assert "/sql/invalidate-tables" not in served.client().get("/openapi.json").json()["paths"]

"""The admin HTTP API served by a real uvicorn on loopback, driven by httpx."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from tests.waiting import wait_until

import stratacache as sc
from stratacache.admin import AdminAPI

TOKEN = "s3cret-admin-token"


@pytest.fixture
def served(redis_url: str) -> Iterator[tuple[str, sc.Cache]]:
    """An AdminAPI over memory + Redis, served by uvicorn in a thread; yields (base URL, cache)."""
    cache = sc.Cache(tiers=[sc.MemoryTier(), sc.RedisTier(url=redis_url)], namespace="adm")
    config = uvicorn.Config(
        AdminAPI(cache, token=TOKEN), host="127.0.0.1", port=0, log_level="warning", lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to start")
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", cache
    server.should_exit = True
    thread.join(10)


def _client(base: str, token: str | None = TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=base, headers=headers, timeout=5)


def _seed(cache: sc.Cache) -> None:
    """Write entries through a second cache on the same Redis (the server's own is in its loop)."""
    redis_url = cache.tiers.slots[1].tier.url  # type: ignore[attr-defined]
    seeder = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace="adm")
    with seeder.sync as sync:
        sync.set("user:1", "u1", tags=["org:1"])
        sync.set("user:2", "u2", tags=["org:2"])
        sync.set("report:a", "ra")


def _remaining(cache: sc.Cache) -> dict[str, Any]:
    redis_url = cache.tiers.slots[1].tier.url  # type: ignore[attr-defined]
    reader = sc.Cache(tiers=[sc.RedisTier(url=redis_url)], namespace="adm")
    with reader.sync as sync:
        return sync.get_many(["user:1", "user:2", "report:a"])


def test_requests_without_token_are_refused(served: tuple[str, sc.Cache]) -> None:
    """No token or a wrong one gets 401 and changes nothing."""
    base, _ = served
    assert _client(base, None).get("/stats").status_code == 401
    assert _client(base, "wrong").post("/clear").status_code == 401


def test_stats_returns_the_cache_counters(served: tuple[str, sc.Cache]) -> None:
    """GET /stats returns per-tier counters for this namespace."""
    base, _ = served
    data = _client(base).get("/stats").json()
    assert data["namespace"] == "adm" and set(data["tiers"]) == {"memory", "redis"}


def test_invalidate_by_tag_key_and_prefix(served: tuple[str, sc.Cache]) -> None:
    """POST /invalidate removes exactly the tagged, named and prefixed entries."""
    base, cache = served
    _seed(cache)
    response = _client(base).post("/invalidate", json={"tags": ["org:1"], "reason": "test"})
    assert response.status_code == 200
    assert _remaining(cache) == {"user:2": "u2", "report:a": "ra"}
    _client(base).post("/invalidate", json={"keys": ["user:2"], "prefix": "report:"})
    assert _remaining(cache) == {}


def test_bad_bodies_get_400_and_invalidate_nothing(served: tuple[str, sc.Cache]) -> None:
    """Malformed JSON, wrong types, unknown fields and empty requests are 400s."""
    base, cache = served
    _seed(cache)
    client = _client(base)
    for body in (b"{not json", b'{"keys": "user:1"}', b'{"nope": 1}', b"{}", b'{"keys": [1]}'):
        response = client.post("/invalidate", content=body)
        assert response.status_code == 400, body
    assert len(_remaining(cache)) == 3


def test_clear_and_unknown_routes(served: tuple[str, sc.Cache]) -> None:
    """POST /clear empties the namespace; unknown routes are 404 and wrong methods 405."""
    base, cache = served
    _seed(cache)
    client = _client(base)
    assert client.get("/nope").status_code == 404
    assert client.get("/clear").status_code == 405
    assert client.post("/clear").json() == {"cleared": True}
    assert _remaining(cache) == {}

"""The FastAPI/Starlette lifespan and dependency on a real uvicorn server."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from tests.servers import uvicorn_server

import stratacache as sc
from stratacache.contrib.starlette import get_cache, lifespan


def test_lifespan_and_dependency_on_uvicorn(redis_url: str) -> None:
    """The cache starts with the app, reaches endpoints through Depends, and closes after."""
    entered: list[str] = []

    @contextlib.asynccontextmanager
    async def own(app: Any) -> AsyncIterator[None]:
        entered.append("start")
        yield
        entered.append("stop")

    app = FastAPI(
        lifespan=lifespan(
            f"memory://,{redis_url}", namespace=f"fa{uuid.uuid4().hex[:8]}", app_lifespan=own
        )
    )
    loads: list[int] = []

    @app.get("/items/{item_id}")
    async def item(item_id: int, cache: Annotated[sc.Cache, Depends(get_cache)]) -> dict[str, Any]:
        async def load() -> dict[str, int]:
            loads.append(item_id)
            return {"id": item_id}

        value = await cache.get_or_set(f"item:{item_id}", load, ttl=60)
        return {"value": value, "hits": await cache.incr("hits")}

    with uvicorn_server(app) as (base, _), httpx.Client(base_url=base) as client:
        bodies = [client.get("/items/3").json() for _ in range(3)]
        cache = app.state.stratacache
        assert cache._started
    assert [b["value"] for b in bodies] == [{"id": 3}] * 3 and loads == [3]
    assert [b["hits"] for b in bodies] == [1, 2, 3]
    assert entered == ["start", "stop"]
    assert not cache._started  # closed by the lifespan


def test_get_cache_without_lifespan_is_a_config_error() -> None:
    """An app without the lifespan gets a ConfigError from the dependency, not None."""
    from starlette.requests import Request

    request = Request({"type": "http", "app": FastAPI()})
    with pytest.raises(sc.ConfigError, match="lifespan"):
        get_cache(request)


@pytest.mark.parametrize(
    ("cache", "options"), [(42, {}), (sc.Cache([sc.MemoryTier()]), {"namespace": "x"})]
)
def test_bad_lifespan_arguments(cache: Any, options: dict[str, Any]) -> None:
    """A non-cache, or options beside a built Cache, is a ConfigError."""
    with pytest.raises(sc.ConfigError):
        lifespan(cache, **options)


def test_cached_endpoint_keys_on_its_query_parameters(redis_url: str) -> None:
    """@cache.cached on a FastAPI endpoint: its query parameters are arguments, so in the key."""
    from fastapi.testclient import TestClient

    cache = sc.Cache.from_url(f"memory://,{redis_url}", namespace=f"fa{uuid.uuid4().hex[:8]}")
    app = FastAPI(lifespan=lifespan(cache))
    calls: list[str] = []

    @app.get("/search")
    @cache.cached(ttl=60)
    async def search(q: str, page: int = 1) -> dict[str, Any]:
        calls.append(q)
        return {"q": q, "page": page}

    with TestClient(app) as client:
        answers = [client.get(u).json() for u in ("/search?q=a", "/search?q=b", "/search?q=a")]
    assert [a["q"] for a in answers] == ["a", "b", "a"] and calls == ["a", "b"]


def test_cached_endpoint_returning_a_response_is_refused_clearly(redis_url: str) -> None:
    """A Response result is refused with SerializationError at the call, never stored or replayed."""
    from fastapi.responses import JSONResponse

    cache = sc.Cache.from_url(f"memory://,{redis_url}", namespace=f"fa{uuid.uuid4().hex[:8]}")

    @cache.cached(ttl=60, key="answer")
    def answer() -> JSONResponse:
        return JSONResponse({"n": 1})

    for _ in range(2):
        with pytest.raises(sc.SerializationError, match="JSONResponse"):
            answer()
    assert cache.sync.get("answer") is None
    cache.sync.close()

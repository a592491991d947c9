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

"""One app process of the two-process test: FastAPI + CacheMiddleware over memory and Redis.

Run as ``python -m tests.middleware.proc_app PORT REDIS_URL NAMESPACE``. The memory
tier keeps pages 30 seconds; a purge made by another process reaches it over the
invalidation bus, not by expiry.
"""

from __future__ import annotations

import os
import sys

import uvicorn
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse

import stratacache as sc
from stratacache.middleware import CacheMiddleware, purge_url


def build(redis_url: str, namespace: str) -> FastAPI:
    """The app: ``/page/{name}`` (fresh 60 s, body names this process) and ``POST /_purge``."""
    cache = sc.Cache(
        tiers=[sc.MemoryTier(maxsize=1000, ttl=30), sc.RedisTier(url=redis_url)],
        namespace=namespace,
        bus=sc.RedisBus(url=redis_url),
    )
    app = FastAPI()
    app.add_middleware(CacheMiddleware, cache=cache)

    @app.get("/page/{name}")
    async def page(name: str) -> PlainTextResponse:
        return PlainTextResponse(
            f"{name} from {os.getpid()}", headers={"cache-control": "max-age=60"}
        )

    @app.get("/_health")
    async def health() -> PlainTextResponse:
        return PlainTextResponse(str(os.getpid()), headers={"cache-control": "no-store"})

    @app.post("/_purge")
    async def purge(url: str) -> dict[str, str]:
        await purge_url(cache, url)
        return {"purged": url}

    return app


if __name__ == "__main__":
    port, redis_url, namespace = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    uvicorn.run(build(redis_url, namespace), host="127.0.0.1", port=port, log_level="warning")

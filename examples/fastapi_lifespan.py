"""FastAPI with the stratacache lifespan and dependency, served by uvicorn; exits after a few calls.

python examples/fastapi_lifespan.py            # memory tier only
REDIS_URL=redis://127.0.0.1:6379/0 python examples/fastapi_lifespan.py   # memory + Redis
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Annotated

import httpx
import uvicorn
from fastapi import Depends, FastAPI

import stratacache as sc
from stratacache.contrib.starlette import get_cache, lifespan

TIERS = "memory://?maxsize=10000&ttl=30"
if os.environ.get("REDIS_URL"):
    TIERS += "," + os.environ["REDIS_URL"]

app = FastAPI(lifespan=lifespan(TIERS, namespace="example-fastapi-ls", default_ttl=300))
CacheDep = Annotated[sc.Cache, Depends(get_cache)]


@app.get("/items/{item_id}")
async def item(item_id: int, cache: CacheDep) -> dict[str, object]:
    """A value loaded once per minute, plus an atomic per-item view counter."""

    async def load() -> dict[str, object]:
        return {"id": item_id, "loaded_at": time.time()}

    value = await cache.get_or_set(f"item:{item_id}", load, ttl=60)
    views = await cache.incr(f"views:{item_id}")
    return {"item": value, "views": views}


@app.post("/items/{item_id}/reset")
async def reset(item_id: int, cache: CacheDep) -> dict[str, bool]:
    """Drop the cached item and its counter."""
    await cache.invalidate(keys=[f"item:{item_id}", f"views:{item_id}"])
    return {"ok": True}


def main() -> None:
    """Serve with uvicorn (lifespan on), call it, stop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with httpx.Client(base_url=base) as client:
        client.post("/items/1/reset")
        bodies = [client.get("/items/1").json() for _ in range(3)]
        for body in bodies:
            print(body)
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()
    if [b["views"] for b in bodies] != [1, 2, 3] or len({b["item"]["loaded_at"] for b in bodies}) != 1:
        raise SystemExit(f"unexpected responses: {bodies}")


if __name__ == "__main__":
    main()

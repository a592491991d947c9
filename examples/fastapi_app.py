"""FastAPI behind stratacache's HTTP cache: run it, it serves itself a few requests and exits.

python examples/fastapi_app.py            # memory tier only
REDIS_URL=redis://127.0.0.1:6379/0 python examples/fastapi_app.py   # memory + Redis
"""

from __future__ import annotations

import os
import socket
import threading
import time

import httpx
import uvicorn
from fastapi import FastAPI

import stratacache as sc
from stratacache.middleware import CacheMiddleware, CacheRule, cache_response

tiers: list[sc.Tier] = [sc.MemoryTier(maxsize=10_000, ttl=30)]
if os.environ.get("REDIS_URL"):
    tiers.append(sc.RedisTier(url=os.environ["REDIS_URL"]))
cache = sc.Cache(tiers=tiers, namespace="example-fastapi")

app = FastAPI()
app.add_middleware(
    CacheMiddleware,
    cache=cache,
    rules=[CacheRule("/admin/*", enabled=False), CacheRule("/news/{slug}", ttl=120)],
)


@app.get("/products/{product_id}")
@cache_response(ttl=60, tags=["product:{product_id}"])
async def product(product_id: int) -> dict[str, object]:
    """Cached 60 s and tagged, so a product update can purge its pages."""
    return {"id": product_id, "rendered_at": time.time()}


@app.post("/products/{product_id}/price")
async def change_price(product_id: int) -> dict[str, str]:
    """Invalidate every page tagged with the product."""
    await cache.invalidate(tags=[f"product:{product_id}"])
    return {"status": "purged"}


@app.get("/news/{slug}")
async def news(slug: str) -> dict[str, str]:
    """Cached by the /news rule."""
    return {"slug": slug}


def main() -> None:
    """Serve on a free loopback port, make a few requests, print what the cache did."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("server did not start")
        time.sleep(0.01)
    seen = []
    with httpx.Client(base_url=base) as client:
        for method, path in [
            ("GET", "/products/42"),
            ("GET", "/products/42"),
            ("POST", "/products/42/price"),
            ("GET", "/products/42"),
            ("GET", "/news/launch"),
            ("GET", "/news/launch"),
        ]:
            response = client.request(method, path)
            label = response.headers.get("x-cache", "-")
            print(f"{method:4} {path:22} {response.status_code} X-Cache: {label}")
            seen.append(label)
    server.should_exit = True
    thread.join(timeout=10)
    expected = ["MISS", "HIT", "-", "MISS", "MISS", "HIT"]
    if seen != expected:
        raise SystemExit(f"unexpected cache behaviour: {seen} != {expected}")


if __name__ == "__main__":
    main()

"""Flask behind stratacache's WSGI HTTP cache, served by waitress; runs a few requests and exits.

python examples/flask_app.py            # memory tier only
REDIS_URL=redis://127.0.0.1:6379/0 python examples/flask_app.py   # memory + Redis
"""

from __future__ import annotations

import os
import threading
import time

import httpx
from flask import Flask
from waitress import wasyncore
from waitress.server import create_server

import stratacache as sc
from stratacache.middleware import WSGICacheMiddleware, cache_response, purge_url_sync

tiers: list[sc.Tier] = [sc.MemoryTier(maxsize=10_000, ttl=30)]
if os.environ.get("REDIS_URL"):
    tiers.append(sc.RedisTier(url=os.environ["REDIS_URL"]))
cache = sc.Cache(tiers=tiers, namespace="example-flask")

app = Flask(__name__)
app.wsgi_app = WSGICacheMiddleware(app.wsgi_app, cache=cache)  # type: ignore[method-assign]


@app.get("/products/<int:product_id>")
@cache_response(ttl=60, tags=["product:{product_id}"])
def product(product_id: int) -> dict[str, object]:
    """Cached 60 s and tagged with the product."""
    return {"id": product_id, "rendered_at": time.time()}


@app.get("/about")
def about() -> tuple[str, int, dict[str, str]]:
    """Cacheable through its own Cache-Control header."""
    return "about us", 200, {"Cache-Control": "public, max-age=300"}


def main() -> None:
    """Serve on a free loopback port, make a few requests, print what the cache did."""
    server = create_server(app, host="127.0.0.1", port=0)
    base = f"http://127.0.0.1:{server.effective_port}"  # type: ignore[union-attr]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    seen = []
    with httpx.Client(base_url=base) as client:
        for step, path in [
            ("get", "/products/7"),
            ("get", "/products/7"),
            ("tag", "product:7"),
            ("get", "/products/7"),
            ("get", "/about"),
            ("get", "/about"),
            ("purge", "/about"),
            ("get", "/about"),
        ]:
            if step == "tag":
                cache.sync.invalidate(tags=[path])
                print(f"invalidate tag {path}")
                continue
            if step == "purge":
                purge_url_sync(cache, base + path)
                print(f"purge_url {path}")
                continue
            label = client.get(path).headers.get("x-cache", "-")
            print(f"GET {path:14} X-Cache: {label}")
            seen.append(label)
    server.close()
    wasyncore.close_all(server._map)  # type: ignore[union-attr]
    thread.join(timeout=10)
    cache.sync.close()
    expected = ["MISS", "HIT", "MISS", "MISS", "HIT", "MISS"]
    if seen != expected:
        raise SystemExit(f"unexpected cache behaviour: {seen} != {expected}")


if __name__ == "__main__":
    main()

"""Flask with the stratacache extension, configured from app.config, served by waitress.

python examples/flask_extension.py            # memory tier only
REDIS_URL=redis://127.0.0.1:6379/0 python examples/flask_extension.py   # memory + Redis
"""

from __future__ import annotations

import os
import threading

import httpx
from flask import Flask
from waitress import wasyncore
from waitress.server import create_server

from stratacache.contrib.flask import Stratacache

ext = Stratacache()
loads: list[int] = []


def create_app() -> Flask:
    """The application factory: config first, then init_app."""
    app = Flask("example-flask-ext")
    tiers = "memory://?maxsize=10000&ttl=30"
    if os.environ.get("REDIS_URL"):
        tiers += "," + os.environ["REDIS_URL"]
    app.config.update(
        STRATACACHE_URL=tiers,
        STRATACACHE_NAMESPACE="example-flask-ext",
        STRATACACHE_DEFAULT_TTL="5m",
        STRATACACHE_PAGE_CACHE=True,  # WSGI page cache for responses with Cache-Control
    )
    ext.init_app(app)

    @app.get("/users/<int:uid>")
    @ext.cached(ttl=60, key="user:{uid}", tags=["user:{uid}"], unless=lambda r: not r["found"])
    def user(uid: int) -> dict[str, object]:
        loads.append(uid)  # uid 0 is "not found": answered, never cached
        return {"id": uid, "found": uid != 0}

    @app.get("/about")
    def about() -> tuple[str, int, dict[str, str]]:
        return "about us", 200, {"Cache-Control": "public, max-age=300"}

    return app


def main() -> None:
    """Serve on a free port, make a few requests, check what the cache did."""
    app = create_app()
    ext.cache.sync.clear()
    server = create_server(app, host="127.0.0.1", port=0)
    base = f"http://127.0.0.1:{server.effective_port}"  # type: ignore[union-attr]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    with httpx.Client(base_url=base) as client:
        print("user 7:", [client.get("/users/7").json() for _ in range(3)])
        ext.cache.sync.invalidate(tags=["user:7"])
        print("after invalidate:", client.get("/users/7").json())
        print("user 0 (not cached):", [client.get("/users/0").json() for _ in range(2)])
        print("about:", [client.get("/about").headers.get("x-cache") for _ in range(2)])
    server.close()
    wasyncore.close_all(server._map)  # type: ignore[union-attr]
    thread.join(timeout=10)
    ext.close()
    if loads != [7, 7, 0, 0]:
        raise SystemExit(f"unexpected loads: {loads}")


if __name__ == "__main__":
    main()

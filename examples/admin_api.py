"""The admin API mounted in an application, driven with ``AdminClient`` (what the CLI uses).

python examples/admin_api.py                                      # memory + SQLite
REDIS_URL=redis://127.0.0.1:6379/0 python examples/admin_api.py   # memory + Redis + SQLite

Serves a small Starlette app on a free loopback port with the admin API under
``/admin/cache``, makes some traffic, then looks at stats, keys and an entry and
invalidates a tag, as an operator (or ``stratacache stats`` / ``inspect`` /
``invalidate``) would. The dashboard is at http://127.0.0.1:PORT/admin/cache/.
"""

from __future__ import annotations

import os
import secrets
import socket
import tempfile
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import stratacache as sc
from stratacache.admin import AdminAPI, AdminClient, AdminError


def build_app(cache: sc.Cache, admin_token: str, read_token: str) -> Starlette:
    @cache.cached(ttl=60, key="product:{pid}", tags=["catalog"], warm=[(1,), (2,)])
    async def product(pid: int) -> dict[str, object]:
        return {"id": pid, "name": f"product {pid}"}

    async def show(request: Request) -> JSONResponse:
        return JSONResponse(await product(int(request.path_params["pid"])))

    api = AdminAPI(cache, token=admin_token, read_token=read_token)
    return Starlette(routes=[Route("/products/{pid}", show), Mount("/admin/cache", app=api)])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    admin_token, read_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory() as workdir:
        tiers: list[sc.Tier] = [sc.MemoryTier(maxsize=1_000, ttl=30)]
        if os.environ.get("REDIS_URL"):
            tiers.append(sc.RedisTier(url=os.environ["REDIS_URL"]))
        tiers.append(sc.SQLTier(url=f"sqlite:///{os.path.join(workdir, 'cache.db')}"))
        cache = sc.Cache(tiers, namespace=f"example-admin-{os.getpid()}")
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                build_app(cache, admin_token, read_token), port=port, log_level="warning"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.01)
        try:
            base = f"http://127.0.0.1:{port}"
            operator = AdminClient(f"{base}/admin/cache", admin_token)
            viewer = AdminClient(f"{base}/admin/cache", read_token)
            shop = AdminClient(base)  # any HTTP client works for the app's own routes
            for pid in (1, 2, 3, 1, 1, 2):
                shop.request("GET", f"/products/{pid}")
            stats = viewer.stats()
            memory = stats["tiers"]["memory"]
            print(f"memory tier: {memory['hits']} hits, {memory['misses']} misses")
            print("keys:", viewer.keys(prefix="product:")["keys"])
            entry = viewer.entry("product:1")
            print("product:1 is held by", [t for t, i in entry["tiers"].items() if i["present"]])
            print("warmers:", viewer.warmers())
            operator.invalidate(tags=["catalog"], reason="catalog re-import")
            try:  # a tag invalidation outdates entries in O(1): they read as absent at once
                viewer.entry("product:1")
                raise SystemExit("product:1 is still served after its tag was invalidated")
            except AdminError as exc:
                print("after invalidating the catalog tag, product:1:", exc)
            assert viewer.stats()["engine"]["invalidations"] >= 1
        finally:
            server.should_exit = True
            thread.join(10)


if __name__ == "__main__":
    main()

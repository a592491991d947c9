"""An app for the multi-worker metrics test: ``uvicorn tests.metrics_app:app --workers 2``.

Each worker serves ``GET /work/{x}`` through a cached function over memory + Redis,
the admin API under ``/admin`` and, on ``$METRICS_PORT``, ``start_http_server``
(the second worker finds the port taken and leaves it to the first).
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import stratacache as sc
from stratacache.admin import AdminAPI
from stratacache.metrics import instrument, start_http_server

TOKEN = "fleet-admin-token-0123456789"
cache = sc.Cache([sc.MemoryTier(), sc.RedisTier(url=os.environ["REDIS_URL"])], namespace="fleet")


@cache.cached(ttl=300, key="double:{x}")
async def double(x: int) -> int:
    return 2 * x


async def work(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid(), "value": await double(int(request.path_params["x"]))})


instrument(cache)
start_http_server(int(os.environ["METRICS_PORT"]))
app = Starlette(
    routes=[
        Route("/work/{x}", work),
        Mount("/admin", app=AdminAPI(cache, token=TOKEN, audit=[])),
    ]
)

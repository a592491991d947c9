"""A host application for the dashboard test: cached work routes and the admin API mounted."""

from __future__ import annotations

import os
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

import stratacache as sc
from stratacache.admin import AdminAPI

TOKEN = "dashboard-admin-token-0123"


def build(redis_url: str) -> tuple[Any, sc.Cache]:
    """``/work/{x}`` and ``/report/{x}`` through cached functions; the admin API on ``/admin``."""
    cache = sc.Cache([sc.MemoryTier(), sc.RedisTier(url=redis_url)], namespace="dash")

    @cache.cached(ttl=300, key="sq:{x}")
    async def square(x: int) -> int:
        return x * x

    @cache.cached(ttl=300, key="report:{x}")
    async def report(x: int) -> dict[str, int]:
        return {"x": x, "pid": os.getpid()}

    async def work(request: Request) -> JSONResponse:
        return JSONResponse(await square(int(request.path_params["x"])))

    async def reports(request: Request) -> JSONResponse:
        return JSONResponse(await report(int(request.path_params["x"])))

    app = Starlette(
        routes=[
            Route("/work/{x}", work),
            Route("/report/{x}", reports),
            Mount("/admin", app=AdminAPI(cache, token=TOKEN, audit=[])),
        ]
    )
    return app, cache

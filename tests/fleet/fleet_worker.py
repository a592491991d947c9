"""A worker OS process for the Cluster and Sentinel tests (run as a script).

``python fleet_worker.py serve <spec json>``: one cache per namespace (memory above
the topology's ``RedisTier``, default bus), answering one JSON command per stdin
line with one JSON line: ``{"op": "get", "key": k}`` → ``{namespace: value}``,
``{"op": "l1", "key": k}`` → ``{namespace: in the memory tier?}``,
``{"op": "connected"}`` → ``{namespace: bus connected?}``.

``python fleet_worker.py lock <spec json> <go file>``: once ``go file`` exists, call
``get_or_set(key, loader, lock=True)`` for every key at once; the loader counts its
runs in Redis (``INCR loads:<namespace>:<key>``). Prints the values read.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import redis

import stratacache as sc


def connection(spec: dict[str, Any]) -> sc.RedisConnection:
    if spec["mode"] == "sentinel":
        return sc.RedisConnection(
            sentinels=[tuple(s) for s in spec["sentinels"]], service_name=spec["service"]
        )
    return sc.RedisConnection(spec["url"], cluster=True, startup_nodes=spec["startup_nodes"])


def make_cache(spec: dict[str, Any], namespace: str) -> sc.Cache:
    tier = sc.RedisTier(connection=connection(spec), socket_timeout=2.0)
    options: dict[str, Any] = {}
    if spec.get("tracking"):
        options["bus"] = sc.RedisBus(connection=tier.connection, tracking=True)
    return sc.Cache(
        tiers=[sc.MemoryTier(maxsize=1000, ttl=300), tier],
        namespace=namespace,
        default_ttl=300,
        **options,
    )


async def serve(spec: dict[str, Any]) -> None:
    caches = {ns: make_cache(spec, ns) for ns in spec["namespaces"]}
    for cache in caches.values():
        await cache.start()
    print(json.dumps({"ready": True}), flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        op = command["op"]
        reply: dict[str, Any] = {}
        for ns, cache in caches.items():
            if op == "get":
                reply[ns] = await cache.get(command["key"])
            elif op == "l1":
                top: Any = cache.tiers.top
                reply[ns] = top.peek(cache.full_key(command["key"])) is not None
            elif op == "connected":
                bus: Any = cache.bus
                reply[ns] = bool(bus is not None and bus.connected and cache.tiers.local_trusted)
        print(json.dumps(reply), flush=True)
    for cache in caches.values():
        await cache.close()


async def lock(spec: dict[str, Any], go: Path) -> None:
    namespace = spec["namespaces"][0]
    cache = make_cache(spec, namespace)
    counter: Any = (
        redis.Sentinel([tuple(s) for s in spec["sentinels"]]).master_for(spec["service"])
        if spec["mode"] == "sentinel"
        else redis.RedisCluster.from_url(spec["url"])
    )
    async with cache:
        print(json.dumps({"ready": True}), flush=True)
        while not go.exists():  # noqa: ASYNC110, ASYNC240 (a file from another process)
            await asyncio.sleep(0.005)

        async def loader(key: str) -> str:
            counter.incr(f"loads:{namespace}:{key}")
            await asyncio.sleep(0.3)  # long enough for every other process to ask meanwhile
            return f"value-of-{key}"

        values = await asyncio.gather(
            *(cache.get_or_set(key, lambda key=key: loader(key), lock=True) for key in spec["keys"])
        )
    print(json.dumps({"pid": os.getpid(), "values": values}), flush=True)


if __name__ == "__main__":
    role, raw = sys.argv[1], json.loads(sys.argv[2])
    if role == "serve":
        asyncio.run(serve(raw))
    else:
        asyncio.run(lock(raw, Path(sys.argv[3])))

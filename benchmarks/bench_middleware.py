"""HTTP cache middleware throughput: bare app vs uncached 20 ms handler vs cached hit.

Two uvicorn processes run side by side on loopback:

- *bare*: a Starlette app without middleware; ``/fast`` returns 1 KiB, ``/slow`` returns the
  same bytes after a 20 ms ``asyncio.sleep`` (the "uncached" figure);
- *cached*: the same app behind ``CacheMiddleware``; ``/slow`` says ``max-age=3600``, so after
  the first request every request is a hit that never reaches the handler.

A load generator (``wrk`` when installed, else an httpx/asyncio client) drives each
scenario in turn, ``--rounds`` times interleaved; medians are reported. The hit-path
overhead is the cost per request of a cached hit over the bare app's ``/fast``
(target: <= 1.3x).

    python benchmarks/bench_middleware.py [--duration 5] [--rounds 3] [--redis URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

BODY = b"x" * 1024
ROOT = Path(__file__).resolve().parents[1]


def build_app(cached: bool, redis_url: str | None) -> object:
    """The Starlette app of one server process."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    headers = {"cache-control": "max-age=3600", "content-type": "text/plain"}

    async def fast(request: object) -> Response:
        return Response(BODY, headers=headers)

    async def slow(request: object) -> Response:
        await asyncio.sleep(0.020)
        return Response(BODY, headers=headers)

    app = Starlette(routes=[Route("/fast", fast), Route("/slow", slow)])
    if cached:
        import stratacache as sc
        from stratacache.middleware import CacheMiddleware

        tiers: list[object] = [sc.MemoryTier(maxsize=10_000)]
        if redis_url:
            tiers.append(sc.RedisTier(url=redis_url))
        cache = sc.Cache(tiers=tiers, namespace=f"bench{os.getpid()}")  # type: ignore[arg-type]
        app.add_middleware(CacheMiddleware, cache=cache)
    return app


def serve(kind: str, port: int, redis_url: str | None) -> None:
    """Run one server process until killed."""
    import uvicorn

    app = build_app(kind == "cached", redis_url)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_up(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def run_wrk(url: str, duration: float, connections: int) -> float:
    """Requests per second reported by wrk."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if match is None:
        raise RuntimeError(f"cannot read wrk output:\n{out}")
    return float(match.group(1))


def run_httpx(url: str, duration: float, connections: int) -> float:
    """Requests per second of ``connections`` concurrent httpx clients (when wrk is absent)."""
    import httpx

    async def main() -> float:
        count = 0
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(limits=limits) as client:
            end = time.monotonic() + duration

            async def worker() -> None:
                nonlocal count
                while time.monotonic() < end:
                    (await client.get(url)).raise_for_status()
                    count += 1

            start = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(connections)))
            return count / (time.monotonic() - start)

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--redis", default=None, help="add a RedisTier at this URL behind memory")
    parser.add_argument("--serve", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.redis)
        return

    load = run_wrk if shutil.which("wrk") else run_httpx
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    ports = {"bare": _free_port(), "cached": _free_port()}
    procs = []
    for kind, port in ports.items():
        cmd = [sys.executable, __file__, "--serve", kind, str(port)]
        if args.redis:
            cmd += ["--redis", args.redis]
        procs.append(subprocess.Popen(cmd, env=env))
    try:
        for port in ports.values():
            _wait_up(port)
        scenarios = {
            "bare app (1 KiB, no middleware)": f"http://127.0.0.1:{ports['bare']}/fast",
            "uncached 20 ms handler": f"http://127.0.0.1:{ports['bare']}/slow",
            "cached hit (20 ms handler)": f"http://127.0.0.1:{ports['cached']}/slow",
        }
        for url in scenarios.values():  # warm up; fills the cache for the hit scenario
            load(url, 1.0, 4)
        results: dict[str, list[float]] = {name: [] for name in scenarios}
        for _ in range(args.rounds):
            for name, url in scenarios.items():
                results[name].append(load(url, args.duration, args.connections))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)

    medians = {name: statistics.median(rps) for name, rps in results.items()}
    print(
        f"load generator: {load.__name__[4:]}, {args.connections} connections, "
        f"{args.rounds} rounds x {args.duration:g}s, tiers: memory"
        f"{' + redis' if args.redis else ''}"
    )
    for name, rps in medians.items():
        runs = ", ".join(f"{r:.0f}" for r in results[name])
        print(f"  {name:34s} {rps:10.0f} req/s   (runs: {runs})")
    bare, uncached, hit = medians.values()
    print(f"  cached hit vs uncached handler:    {hit / uncached:6.1f}x the throughput")
    print(f"  cached hit cost vs bare app:       {bare / hit:6.2f}x  (target <= 1.30)")


if __name__ == "__main__":
    main()

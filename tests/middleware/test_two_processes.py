"""Two app processes share cached pages through Redis, and one's purge reaches the other."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _up(base: str) -> bool:
    try:
        return httpx.get(base + "/_health", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def pair(redis_server: str) -> Iterator[tuple[str, str]]:
    """Base URLs of two uvicorn processes over the same Redis namespace."""
    namespace = f"mw2p{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    procs, bases = [], []
    for _ in range(2):
        port = _free_port()
        args = [sys.executable, "-m", "tests.middleware.proc_app", str(port), redis_server]
        procs.append(subprocess.Popen([*args, namespace], cwd=ROOT, env=env))
        bases.append(f"http://127.0.0.1:{port}")
    try:
        for base in bases:
            wait_until(lambda base=base: _up(base), timeout=30, what=f"app at {base}")
        yield bases[0], bases[1]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def _get(base: str, path: str) -> httpx.Response:
    # same Host for both processes: they serve one site
    return httpx.get(base + path, headers={"host": "shop.test"}, timeout=5)


def test_page_cached_by_one_process_is_a_hit_in_the_other(pair: tuple[str, str]) -> None:
    """Process B answers HIT with the body process A stored in Redis."""
    a, b = pair
    first = _get(a, "/page/shared")
    second = _get(b, "/page/shared")
    assert (second.headers["x-cache"], second.text) == ("HIT", first.text)


def test_purge_in_one_process_is_seen_by_the_other(pair: tuple[str, str]) -> None:
    """After process A purges a URL, process B stops serving its cached copy."""
    a, b = pair
    _get(a, "/page/purged")
    assert _get(b, "/page/purged").headers["x-cache"] == "HIT"
    httpx.post(a + "/_purge", params={"url": "http://shop.test/page/purged"}).raise_for_status()
    wait_until(
        lambda: _get(b, "/page/purged").headers["x-cache"] == "MISS",
        timeout=10,
        what="process B to see the purge",
    )

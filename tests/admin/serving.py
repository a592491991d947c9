"""A real uvicorn on a free port in a thread, for the admin API tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from tests.waiting import wait_until


@contextmanager
def serve(app: Any, host: str = "127.0.0.1") -> Iterator[int]:
    """Serve ``app`` with uvicorn (lifespan on) until the block ends; yields the port."""
    config = uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to start")
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)

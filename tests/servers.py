"""Real servers for the integration tests: waitress (WSGI) and uvicorn (ASGI) on free ports."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

from tests.waiting import wait_until


@contextlib.contextmanager
def waitress_server(app: Any, threads: int = 4) -> Iterator[str]:
    """Serve a WSGI app with waitress; yields its base URL."""
    from waitress import wasyncore
    from waitress.server import create_server

    server: Any = create_server(app, host="127.0.0.1", port=0, threads=threads)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        # close() stops listening only; kept-alive channels would keep the loop running
        server.close()
        wasyncore.close_all(server._map)
        server.task_dispatcher.shutdown()
        thread.join(timeout=10)


@contextlib.contextmanager
def uvicorn_server(app: Any, lifespan: str = "on") -> Iterator[tuple[str, Any]]:
    """Serve an ASGI app with uvicorn; yields its base URL and the server."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan=lifespan))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_until(lambda: server.started, what="uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

"""A small ASGI app served by the hub's own server (uvicorn with `weightyard.server`'s protocol) in a thread
of the test process, on 127.0.0.1: for tests of what the server itself does with bodies and sockets."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn

from weightyard import server as hub_server
from weightyard.config import Settings


async def answered_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> bool:
    """Answer a lifespan scope (started, then shut down); whether `scope` was one."""
    if scope["type"] != "lifespan":
        return False
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})
    return True


@contextlib.contextmanager
def serving(app: Any, settings: Settings) -> Iterator[None]:
    """`app` served at `settings.host`:`settings.port` until the block ends."""
    config = hub_server.uvicorn_config(app, settings, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)

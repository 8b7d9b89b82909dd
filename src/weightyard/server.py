"""The HTTP server around the app: uvicorn, with every connection bounded in size and time.

uvicorn alone lets a connection that never finishes its request head stay open forever (its keep-alive
timer only runs between requests and stops at the first byte), so a few hundred slow clients could hold the
hub. Here every connection must deliver a complete request head within `header_timeout` seconds of opening
and of each response; a head larger than `max_header_bytes` is refused; past `max_connections` connections or
requests in progress, requests are answered 503 at once. Bodies are bounded by the app (`api.body_limit`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from weightyard.config import Settings


class _BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size limit and a deadline for each request head."""

    head_timeout = 30.0
    max_head_bytes = 64 * 1024

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        # The parser holds a header value whole until it ends, so the head is measured here, in bytes
        # received while a head is awaited: at most one socket read past the limit is ever held.
        super().data_received(data)
        if self.cycle is not self._previous_cycle:
            self._cancel_head_timer()  # a new request's head is complete
            self._head_bytes = 0
        elif self._head_timer is not None and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.max_head_bytes:
                self.send_400_response("Request head too large.")

    def on_response_complete(self) -> None:
        self._await_head()
        super().on_response_complete()  # may start a pipelined request at once
        if self.cycle is not self._previous_cycle or self.transport.is_closing():
            self._cancel_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        self._cancel_head_timer()
        self._head_bytes = 0
        self._previous_cycle = self.cycle
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_expired)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.cycle is self._previous_cycle and not self.transport.is_closing():
            self.transport.close()


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for serving `app` with the limits in `settings`."""
    limits = {"head_timeout": settings.header_timeout, "max_head_bytes": settings.max_header_bytes}
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=type("BoundedProtocol", (_BoundedProtocol,), limits),
        timeout_keep_alive=settings.keep_alive_timeout,
        limit_concurrency=settings.max_connections,
        **options,
    )

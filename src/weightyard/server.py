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
from uvicorn.protocols.http.h11_impl import H11Protocol

from weightyard.config import Settings


class _HeadDeadlineProtocol(H11Protocol):
    """h11 (whose head size limit is enforced) plus a deadline for each request head."""

    head_timeout = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._await_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not self._previous_cycle:
            self._cancel_head_timer()  # a new request's head is complete

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
    protocol = type(
        "HeadDeadlineProtocol", (_HeadDeadlineProtocol,), {"head_timeout": settings.header_timeout}
    )
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol,
        timeout_keep_alive=settings.keep_alive_timeout,
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=settings.max_header_bytes,
        **options,
    )

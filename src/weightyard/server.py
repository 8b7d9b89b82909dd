"""The HTTP server around the app: uvicorn, with every connection bounded in size and time.

uvicorn alone lets a connection that never finishes its request head stay open forever (its keep-alive
timer only runs between requests and stops at the first byte), so a few hundred slow clients could hold the
hub. Here every connection must deliver a complete request head within `header_timeout` seconds of opening
and of each response; a head larger than `max_header_bytes` is refused; past `max_connections` connections or
requests in progress, requests are answered 503 at once. Bodies are bounded by the app (`api.body_limit`).

Several processes (`weightyard serve --workers N`, docs/scale.md) are uvicorn's own supervisor: the parent
binds the one listening socket and starts N processes that each build the app with `HubApp` and accept on
that socket, and it starts a new process when one dies. Any process may answer any request because none
keeps anything that matters in its memory ("What is shared between workers" in docs/scale.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import functools
import logging
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from weightyard import zero_copy
from weightyard.config import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI


# glibc's `mallopt` option for the number of malloc arenas (malloc.h).
_M_ARENA_MAX = -8
MALLOC_ARENAS = 2


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> None:
    """Let the C library keep at most `count` malloc arenas in this process; call it before threads start.

    glibc gives each thread that allocates while the others hold their arenas one of its own, up to eight per
    core, and each arena keeps the large buffers freed into it (request bodies, read windows) for reuse. With
    the server's request threads, that took the peak memory of the transfer benchmark to 327 MB (limit 300),
    against 216 MB with two arenas, in two runs of `bench/transfer.py --size 512M --repeat 2` one after the
    other (docs/benchmarks.md). A C library without `mallopt` is left as it is.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(_M_ARENA_MAX, count)


@dataclass(frozen=True)
class HubApp:
    """The app factory: opens the hub described by `settings` and returns its ASGI app. It is a picklable
    value, so uvicorn's supervisor can hand it to each worker process, which calls it once at start-up.

    Example:
        >>> config = uvicorn_config(HubApp(Settings()), Settings(), factory=True, workers=4)  # doctest: +SKIP
    """

    settings: Settings

    def __call__(self) -> FastAPI:
        from weightyard.api import create_app
        from weightyard.hub import Hub
        from weightyard.maintenance.startup import StartupError

        limit_malloc_arenas()  # first: a worker process starts here
        try:
            # Never creates: the process that started the workers checked and initialised the hub.
            hub = Hub.open(self.settings, create=False)
        except StartupError as exc:
            # The supervisor stops, instead of restarting a worker that would fail the same way forever.
            logging.getLogger("uvicorn.error").error("%s", exc)
            sys.exit(STARTUP_FAILURE)
        return create_app(hub)


def app_factory() -> FastAPI:
    """The hub configured by the `WEIGHTYARD_*` environment, for ASGI servers that import an app factory:
    `uvicorn --factory weightyard.server:app_factory` (docs/scale.md)."""
    return HubApp(Settings())()


class BoundedConfig(uvicorn.Config):
    """uvicorn's configuration plus the request head limits `_BoundedProtocol` reads (a plain value that
    travels to worker processes with the rest of the configuration)."""

    def __init__(self, app: Any, *, head_timeout: float, max_head_bytes: int, **options: Any) -> None:
        super().__init__(app, **options)
        self.head_timeout = head_timeout
        self.max_head_bytes = max_head_bytes


class _BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size limit and a deadline for each request head."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        assert isinstance(config, BoundedConfig)
        self.head_timeout = config.head_timeout
        self.max_head_bytes = config.max_head_bytes

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        super().connection_made(transport)
        # Bodies go straight to the socket only on plain TCP (a TLS transport encrypts what it is given).
        sock = transport.get_extra_info("socket")
        plain = sock is not None and transport.get_extra_info("sslcontext") is None
        self._socket_fd: int | None = sock.fileno() if plain else None
        self._await_head()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if self._socket_fd is not None and cycle is not None and cycle.scope is self.scope:
            send = functools.partial(self._send_segments, cycle)
            self.scope.setdefault("extensions", {})[zero_copy.EXTENSION] = {"send": send}

    async def _send_segments(self, cycle: Any, stream: zero_copy.SegmentStream) -> None:
        """Send `stream` as the body of `cycle`'s response, between its start and its final empty body
        message, on the socket itself (weightyard.zero_copy); counted against its Content-Length."""
        if (
            not cycle.response_started
            or cycle.response_complete
            or cycle.chunked_encoding
            or stream.size > cycle.expected_content_length
        ):
            raise RuntimeError(
                "a zero-copy body needs a started response with a Content-Length that holds it"
            )
        if cycle.disconnected or self._socket_fd is None:
            return
        # Our own descriptor of the socket: the event loop watches it for writability apart from the
        # transport's (which it will not share), and it stays valid if the transport closes meanwhile.
        fd = os.dup(self._socket_fd)
        try:
            while self.transport.get_write_buffer_size():  # the response head, in the rare case it waits
                await self._writable(fd)
                await asyncio.sleep(0)
            skip, left = stream.skip, stream.size
            for item in stream.windows:
                if isinstance(item, concurrent.futures.Future):
                    try:
                        window = await asyncio.wrap_future(item)
                    except asyncio.CancelledError:
                        zero_copy.close_when_done(item)
                        raise
                else:
                    window = item
                try:
                    skip, left = await self._send_window(fd, window.segments, skip, left)
                finally:
                    window.close()
                if left == 0:
                    break
            if left:
                raise RuntimeError(f"the body ended {left} bytes before its Content-Length")
            cycle.expected_content_length -= stream.size
        except (BrokenPipeError, ConnectionResetError):
            cycle.disconnected = True  # the client went away: nothing more to send, nothing to report
            self.transport.close()
        finally:
            os.close(fd)

    async def _send_window(
        self, fd: int, segments: list[zero_copy.Segment], skip: int, left: int
    ) -> tuple[int, int]:
        """Send `segments` less their first `skip` bytes and past `left` bytes; what is left of both."""
        for segment in segments:
            size = segment.count if isinstance(segment, zero_copy.FileRange) else len(segment)
            if skip >= size:
                skip -= size
                continue
            count = min(size - skip, left)
            if isinstance(segment, zero_copy.FileRange):
                await self._sendfile(fd, segment.fd, segment.offset + skip, count)
            else:
                await self._write(fd, memoryview(segment)[skip : skip + count])
            skip, left = 0, left - count
            if left == 0:
                break
        return skip, left

    async def _sendfile(self, fd: int, source: int, offset: int, count: int) -> None:
        while count:
            try:
                sent = os.sendfile(fd, source, offset, count)
            except BlockingIOError:
                await self._writable(fd)
                continue
            if sent == 0:
                raise RuntimeError("a stored file ended before the range being sent")
            offset, count = offset + sent, count - sent

    async def _write(self, fd: int, data: memoryview) -> None:
        while data:
            try:
                sent = os.write(fd, data)
            except BlockingIOError:
                await self._writable(fd)
                continue
            data = data[sent:]

    async def _writable(self, fd: int) -> None:
        waiter = self.loop.create_future()
        self.loop.add_writer(fd, _wake, waiter)
        try:
            await waiter
        finally:
            self.loop.remove_writer(fd)

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

    def on_body(self, body: bytes) -> None:
        # uvicorn's own, but without copying: it appends every piece to a bytearray that `receive` then copies
        # into bytes, two copies of each byte of an upload (about 0.1 s per 512 MiB on this machine). Reading
        # pauses after each piece, so the buffer is almost always empty here and the piece itself (a bytes
        # object of its own) is handed on; a piece that follows one not yet taken is joined to it.
        cycle = self.cycle
        if (self.parser.should_upgrade() and self._should_upgrade()) or cycle.response_complete:
            return
        if not cycle.body:
            cycle.body = body  # type: ignore[assignment]  # `receive` hands on bytes(body), which is body
        elif isinstance(cycle.body, bytearray):
            cycle.body += body
        else:
            cycle.body = bytearray(cycle.body) + body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

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


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> BoundedConfig:
    """uvicorn's configuration for serving `app` (an app, or with `factory=True` a `HubApp`) with the limits
    in `settings`."""
    return BoundedConfig(
        app,
        head_timeout=settings.header_timeout,
        max_head_bytes=settings.max_header_bytes,
        host=settings.host,
        port=settings.port,
        http=_BoundedProtocol,
        timeout_keep_alive=settings.keep_alive_timeout,
        limit_concurrency=settings.max_connections,
        **options,
    )

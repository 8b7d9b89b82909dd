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
import contextlib
import ctypes
import functools
import gc
import logging
import os
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httptools
import uvicorn
from starlette.requests import ClientDisconnect
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from weightyard import zero_copy
from weightyard.config import Settings
from weightyard.errors import RequestTimeout

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


def freeze_start_up() -> None:
    """Once the app is built: what start-up made lives as long as the process (modules, routes, the hub's
    services), so it is kept out of the collector's sight, and a full collection walks only what requests
    make. It walked about 136,000 start-up objects, some 0.09 s of CPU in a 512 MiB Xet upload."""
    gc.collect()
    gc.freeze()


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
        app = create_app(hub)
        freeze_start_up()
        return app


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
        self._body_seen = 0
        self._body_abandoned = False
        super().connection_made(transport)
        # Bodies go straight to the socket only on plain TCP (a TLS transport encrypts what it is given).
        sock = transport.get_extra_info("socket")
        plain = sock is not None and transport.get_extra_info("sslcontext") is None
        self._socket_fd: int | None = sock.fileno() if plain else None
        self._await_head()

    def on_headers_complete(self) -> None:
        self._body_seen = 0
        super().on_headers_complete()
        cycle = self.cycle
        if self._socket_fd is not None and cycle is not None and cycle.scope is self.scope:
            extensions = self.scope.setdefault("extensions", {})
            extensions[zero_copy.EXTENSION] = {"send": functools.partial(self._send_segments, cycle)}
            extensions[zero_copy.RECEIVE] = {"take": functools.partial(self._take_body, cycle)}

    def _take_body(
        self, cycle: Any, idle_timeout: float | None = None, max_length: int | None = None
    ) -> zero_copy.DirectBody | None:
        """The rest of `cycle`'s request body as a `_SocketBody`, or None where it cannot be handed over:
        not the request the socket's bytes belong to, no Content-Length or one over `max_length`, an
        unanswered 100-continue."""
        length = _content_length(cycle.scope)
        if (
            self._socket_fd is None
            or cycle is not self.cycle
            or length is None
            or (max_length is not None and length > max_length)
            or length < self._body_seen
            or cycle.waiting_for_100_continue
            or cycle.disconnected
            or cycle.response_complete
            or self.transport.is_closing()
        ):
            return None
        self.flow.pause_reading()
        buffered, cycle.body = cycle.body, bytearray()
        on_socket = length - self._body_seen if cycle.more_body else 0
        return _SocketBody(self, cycle, buffered, on_socket, idle_timeout)

    def _body_taken(self, cycle: Any, unread: int, parser_mid_body: bool) -> None:
        """A `_SocketBody` of `cycle` was closed with `unread` bytes of it still on the socket."""
        if cycle is not self.cycle or self.transport.is_closing():
            return
        if unread:
            # The parser's place in the stream is lost: nothing more is read, and the connection closes once
            # the response is sent.
            cycle.keep_alive = False
            self._body_abandoned = True
            return
        if parser_mid_body:
            # The body went past the parser, which still waits for it: a fresh one reads the next request.
            self.parser = httptools.HttpRequestParser(self)
            with contextlib.suppress(AttributeError):
                self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        cycle.more_body = False
        cycle.message_event.set()

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
        if self._body_abandoned:
            return  # the rest of a body read in part past the parser: closed after the response
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
        self._body_seen += len(body)
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


class _SocketBody:
    """The rest of a request body, read by `recv_into` from the connection's socket (zero_copy.DirectBody).

    The transport's reading stays paused meanwhile; the body's first bytes, those the parser had already
    handed on, come first. The reading is done by a reader callback on our own descriptor of the socket, one
    `recv_into` each time it is readable, so a slow body holds no thread, only this object.
    """

    def __init__(
        self,
        protocol: _BoundedProtocol,
        cycle: Any,
        buffered: bytes | bytearray,
        on_socket: int,
        idle_timeout: float | None,
    ) -> None:
        self._protocol = protocol
        self._cycle = cycle
        self._loop = protocol.loop
        self._buffered = memoryview(buffered)
        self._on_socket = on_socket
        self._parser_mid_body = bool(cycle.more_body)
        self._idle_timeout = idle_timeout
        assert protocol._socket_fd is not None
        self._socket = socket.socket(fileno=os.dup(protocol._socket_fd))
        self._socket.setblocking(False)
        self._closed = False
        # The read in progress: where it puts bytes, how many it has, how many it wants.
        self._target: memoryview | None = None
        self._filled = 0
        self._wanted = 0
        self._waiter: asyncio.Future[None] | None = None
        self._last_progress = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    @property
    def left(self) -> int:
        return len(self._buffered) + self._on_socket

    async def read_into(self, buffer: memoryview) -> int:
        if self._closed:
            raise RuntimeError("the body was handed back")
        wanted = min(len(buffer), self.left)
        filled = min(len(self._buffered), wanted)
        if filled:
            buffer[:filled] = self._buffered[:filled]
            self._buffered = self._buffered[filled:]
        if filled == wanted:
            return filled
        self._target, self._filled, self._wanted = buffer, filled, wanted
        self._receive()
        if self._waiter is None and self._filled < self._wanted:
            self._waiter = self._loop.create_future()
            fd = self._socket.fileno()
            self._loop.add_reader(fd, self._receive)
            self._last_progress = self._loop.time()
            if self._idle_timeout is not None:
                self._idle_timer = self._loop.call_later(self._idle_timeout, self._check_idle)
            try:
                await self._waiter
            finally:
                self._loop.remove_reader(fd)
                if self._idle_timer is not None:
                    self._idle_timer.cancel()
                    self._idle_timer = None
                self._waiter = None
        elif self._waiter is not None:  # failed in the first receive
            waiter, self._waiter = self._waiter, None
            waiter.result()
        filled, self._target = self._filled, None
        return filled

    def _receive(self) -> None:
        """One `recv_into` into the read in progress; wakes it once it is full or failed."""
        target = self._target
        if target is None or (self._waiter is not None and self._waiter.done()):
            return
        try:
            count = self._socket.recv_into(target[self._filled : self._wanted])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fail(ClientDisconnect(str(exc)))
            return
        if count == 0:
            self._fail(ClientDisconnect("the client closed the connection inside the request body"))
            return
        self._filled += count
        self._on_socket -= count
        self._last_progress = self._loop.time()
        if self._filled == self._wanted and self._waiter is not None:
            self._waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._waiter is None:
            self._waiter = self._loop.create_future()
        if not self._waiter.done():
            self._waiter.set_exception(exc)

    def _check_idle(self) -> None:
        assert self._idle_timeout is not None
        self._idle_timer = None
        quiet = self._loop.time() - self._last_progress
        if quiet >= self._idle_timeout:
            self._fail(
                RequestTimeout(f"no part of the request body arrived for {self._idle_timeout:g} seconds")
            )
        else:
            self._idle_timer = self._loop.call_later(self._idle_timeout - quiet, self._check_idle)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._socket.close()
        self._protocol._body_taken(self._cycle, self._on_socket, self._parser_mid_body)


def _content_length(scope: dict[str, Any]) -> int | None:
    """The request's Content-Length, or None without one (or with a Transfer-Encoding, or not a number)."""
    length = None
    for name, value in scope.get("headers") or []:
        if name == b"transfer-encoding" or (name == b"content-length" and length is not None):
            return None
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            if not text.isdigit():
                return None
            length = int(text)
    return length


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

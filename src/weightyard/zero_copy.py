"""Bodies the server moves itself: responses sent from open files (`sendfile`) and buffers, request bodies
received straight into the route's buffers.

A download sent through ASGI passes every byte through the process: read (or mapped) into a buffer, handed to
the event loop, copied into the socket. On a plain TCP connection the hub's server (server.py) offers the ASGI
scope extension `EXTENSION` instead: `await scope["extensions"][EXTENSION]["send"](stream)`, after the
response's start and before its final empty body message, sends a `SegmentStream` on the connection's socket
itself: file ranges with `os.sendfile` (the kernel copies from the page cache into the socket, as nginx does),
buffers with `os.write`. The stream's windows may be futures (a window being checked on another thread), so
checking the next bytes and sending the current ones overlap. Where the extension is missing (TLS, another
ASGI server, tests without a server) or the content is not in local files, the hub streams as before.

Request bodies the other way: ASGI hands a body on in messages, one per socket read of at most 256 KiB, each
read parsed, wrapped, awaited through the middleware and joined into batches (0.2–0.3 s of the event loop's
CPU per 512 MiB here). On a plain TCP connection the server offers `RECEIVE`: `scope["extensions"][RECEIVE]
["take"](max_length)` hands the rest of a body with a Content-Length of at most `max_length` (None: any)
over as a `DirectBody`, whose `read_into` fills the caller's buffer from the socket (`recv_into`, on the
event loop, one call per time the socket is readable) until it is full or the body ends. The body-size
middleware (`api.body_limit`) wraps `take` with the same limits it puts on `receive`. `take` answers None
where it cannot hand the body over (chunked, longer than `max_length`, part of it already read through
`receive`, an `Expect: 100-continue` not yet answered): the body then goes through `receive`, which
refuses one announced too long before reading a byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol

EXTENSION = "weightyard.zero_copy"
RECEIVE = "weightyard.zero_copy.receive"


@dataclass(frozen=True, slots=True)
class FileRange:
    """`count` bytes of the open file `fd` from `offset` on."""

    fd: int
    offset: int
    count: int


Segment = FileRange | bytes | memoryview


def _nothing() -> None:
    pass


@dataclass
class Window:
    """Consecutive segments of a body, and what they hold open: `close` runs once they are sent (or will not
    be), never before."""

    segments: list[Segment]
    close: Callable[[], None] = _nothing


@dataclass
class SegmentStream:
    """A body of `size` bytes: the segments of `windows`, in order, less their first `skip` bytes (a range
    that starts inside a chunk). A window may still be a future (being checked on another thread). `close`
    releases what the stream still holds, the windows not sent included; it is called once, whether the
    stream was sent whole or not."""

    windows: Iterator[Window | Future[Window]]
    size: int
    close: Callable[[], None]
    skip: int = 0


def close_when_done(future: Future[Window]) -> None:
    """Close the window `future` brings once it is there (a window that will not be sent); nothing if it
    failed or was cancelled."""

    def done(finished: Future[Window]) -> None:
        if not finished.cancelled() and finished.exception() is None:
            finished.result().close()

    future.add_done_callback(done)


class DirectBody(Protocol):
    """The rest of a request body, read from the connection's socket into the caller's buffers."""

    @property
    def left(self) -> int:
        """Bytes of the body not yet read."""
        ...

    async def read_into(self, buffer: memoryview) -> int:
        """Put the next bytes of the body into `buffer`, until it is full or the body ends; how many.

        Raises `starlette.requests.ClientDisconnect` when the client goes away first, and
        `weightyard.errors.RequestTimeout` when nothing arrives for the server's idle limit.
        """
        ...

    def close(self) -> None:
        """Hand the connection back: once the body was read to its end it serves the next request; with
        bytes still unread it is closed after the response. Called once, whatever happened."""
        ...

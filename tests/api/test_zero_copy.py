"""Bodies the server sends itself (weightyard.zero_copy): file ranges with sendfile and buffers, on a real
server (uvicorn with the hub's protocol, in a thread of this process, on 127.0.0.1) and a small ASGI app
that answers with `SegmentResponse`: exact bytes, Content-Length kept, connections reused, slow readers,
clients that go away and windows that fail."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.asgi_thread import answered_lifespan, serving
from tests.support import free_port, loopback_client

from weightyard import server as hub_server
from weightyard import zero_copy
from weightyard.api.common import SegmentResponse
from weightyard.config import Settings
from weightyard.zero_copy import FileRange, SegmentStream, Window

MIB = 1024 * 1024


def ready(window: Window) -> Future[Window]:
    future: Future[Window] = Future()
    future.set_result(window)
    return future


def serve_file(app: App, folder: Path, name: str, data: bytes) -> Any:
    """Make GET /NAME answer `data` from a file, sent whole; the open file, which the stream closes."""
    (folder / name).write_bytes(data)
    handle = open(folder / name, "rb")  # noqa: SIM115  # the stream closes it
    window = Window([FileRange(handle.fileno(), 0, len(data))])
    app.streams[name] = lambda: SegmentStream(iter([window]), len(data), handle.close)
    return handle


@dataclass
class App:
    """Answers GET /NAME with the stream `streams[NAME]()` makes, and notes what it saw."""

    streams: dict[str, Callable[[], SegmentStream]] = field(default_factory=dict)
    offered: list[bool] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if await answered_lifespan(scope, receive, send):
            return
        name = scope["path"].strip("/")
        self.offered.append(zero_copy.EXTENSION in scope.get("extensions", {}))
        stream = self.streams[name]()
        close = stream.close

        def closing() -> None:
            close()
            self.closed.append(name)

        stream.close = closing
        response = SegmentResponse(stream, 200, {"Content-Length": str(stream.size)})
        await response(scope, receive, send)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, App, Path]]:
    folder = tmp_path_factory.mktemp("zero-copy")
    app = App()
    port = free_port()
    with serving(app, Settings(data=folder / "data", host="127.0.0.1", port=port)):
        yield f"http://127.0.0.1:{port}", app, folder


def test_file_ranges_and_buffers_arrive_exactly_less_the_skipped_start_and_past_the_size(
    served: tuple[str, App, Path],
) -> None:
    url, app, folder = served
    data = os.urandom(3 * MIB)
    (folder / "file").write_bytes(data)
    handle = open(folder / "file", "rb")  # noqa: SIM115  # the stream closes it
    sent: list[str] = []
    windows: list[Window | Future[Window]] = [
        Window([FileRange(handle.fileno(), 10, 1000)], lambda: sent.append("first")),
        ready(Window([b"hello", memoryview(b"-world-")], lambda: sent.append("second"))),
        Window([FileRange(handle.fileno(), 0, len(data))], lambda: sent.append("third")),
    ]
    whole = data[10:1010] + b"hello-world-" + data
    app.streams["exact"] = lambda: SegmentStream(iter(windows), len(whole) - 3 - 100, handle.close, skip=3)

    with loopback_client() as client:  # one connection, reused
        first = client.get(f"{url}/exact")
        app.streams["again"] = lambda: SegmentStream(iter([Window([b"second"])]), 6, lambda: None)
        second = client.get(f"{url}/again")
    assert first.status_code == 200 and first.content == whole[3:-100]
    assert first.headers["content-length"] == str(len(whole) - 103)
    assert second.content == b"second"
    assert app.offered[-2:] == [True, True], "the server offers the extension on plain TCP"
    assert sent == ["first", "second", "third"], "each window is let go once, after it is sent"
    assert app.closed[-2:] == ["exact", "again"] and handle.closed


def test_a_slow_reader_gets_every_byte_once_the_socket_is_writable_again(
    served: tuple[str, App, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, app, folder = served
    data = os.urandom(24 * MIB)
    waits = []
    writable = hub_server._BoundedProtocol._writable

    async def counted(self: Any, fd: int) -> None:
        waits.append(fd)
        await writable(self, fd)

    monkeypatch.setattr(hub_server._BoundedProtocol, "_writable", counted)
    handle = serve_file(app, folder, "big", data)
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
        sock.settimeout(30)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        head, _, first = head.partition(b"\r\n\r\n")
        body = bytearray(first)
        while len(body) < len(data):
            piece = sock.recv(256 * 1024)
            if not piece:
                break
            body += piece
            if len(body) < 4 * MIB:
                time.sleep(0.002)  # slower than the server at first: its socket buffer fills
    assert b"200 OK" in head and bytes(body) == data
    assert waits, "the server waited for the socket instead of failing or spinning"
    assert "big" in app.closed and handle.closed


def test_a_client_that_goes_away_mid_body_is_not_an_error_and_the_next_one_is_served(
    served: tuple[str, App, Path], caplog: pytest.LogCaptureFixture
) -> None:
    url, app, folder = served
    data = os.urandom(32 * MIB)
    handle = serve_file(app, folder, "gone", data)
    with (
        caplog.at_level(logging.ERROR),
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock,
    ):
        sock.sendall(b"GET /gone HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset
    deadline = time.monotonic() + 10
    while "gone" not in app.closed:
        assert time.monotonic() < deadline, "the stream was never closed"
        time.sleep(0.01)
    assert handle.closed
    app.streams["after"] = lambda: SegmentStream(iter([Window([b"still here"])]), 10, lambda: None)
    with loopback_client() as client:
        assert client.get(f"{url}/after").content == b"still here"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a client going away is no error"


def test_a_window_that_fails_cuts_the_connection_short_of_its_length(served: tuple[str, App, Path]) -> None:
    url, app, _ = served
    failed: Future[Window] = Future()
    failed.set_exception(RuntimeError("a damaged chunk"))
    app.streams["fails"] = lambda: SegmentStream(iter([Window([b"x" * 1000]), failed]), 2000, lambda: None)
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(b"GET /fails HTTP/1.1\r\nHost: x\r\n\r\n")
        received = b""
        while piece := sock.recv(65536):
            received += piece
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"200" in head.split(b"\r\n")[0] and b"content-length: 2000" in head.lower()
    assert body == b"x" * 1000, "what was sent is right, and the connection closed short of the length"
    assert "fails" in app.closed

"""Request bodies read straight from the socket (weightyard.zero_copy.RECEIVE, `pump_body(in_place=...)`),
on a real server (uvicorn with the hub's protocol, in a thread of this process, on 127.0.0.1) behind the hub's
body-size middleware, with a small ASGI app that hashes what `pump_body` hands it: exact bytes in full
batches of reused buffers, connections reused after such a body (pipelined requests included), the bodies
that cannot be taken (chunked, 100-continue, larger than the route's limit) read as before, and every way a
body can go wrong (stalls, a client going away, a consumer that refuses)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hashlib
import json
import mmap
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pytest
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from tests.asgi_thread import answered_lifespan, serving
from tests.support import free_port

from weightyard.api import common
from weightyard.api.body_limit import BodyLimitMiddleware
from weightyard.api.common import _BufferPool, pump_body
from weightyard.config import Settings
from weightyard.errors import ContentMismatch, WeightyardError

KIB = 1024
MIB = 1024 * KIB
BATCH = 256 * KIB
BIG_BATCH = 8 * MIB  # POST /big
LIMIT = 64 * MIB  # the middleware's limit for these bodies
IDLE = 1.0  # the middleware's idle limit, seconds


@dataclass
class BodyApp:
    """POST /echo, /big, /drain-fails, /fails, /limited, /deferred, /deferred-fails, /deferred-cancelled and
    /keeps: the body through `pump_body`, answered with its sha256, its size, how the consumer was handed it
    and the bytes the buffer pool kept when its first batch came. Notes each request's outcome; /keeps keeps a
    view of its first batch (against the rule of `in_place`), with the batch's sha256, in `kept`."""

    outcomes: list[str] = field(default_factory=list)
    reading: int = 0  # requests that began reading their body
    consumed: int = 0  # batches handed to a consumer, all requests
    kept: list[tuple[memoryview, str]] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if await answered_lifespan(scope, receive, send):
            return
        route = scope["path"].strip("/")
        request = Request(scope, receive)
        digest = hashlib.sha256()
        batches: list[tuple[str, int]] = []

        changed: list[int] = []  # /deferred*: batches whose buffer changed before their write was done
        pool_held: list[int] = []  # the pool's kept bytes when the first batch came
        writes: list[Future[None]] = []

        def consume(data: bytes | memoryview) -> Future[None] | None:
            batches.append((type(data).__name__, len(data)))
            self.consumed += 1
            if len(batches) == 1:
                pool_held.append(common._BUFFERS.held)
                if route == "keeps" and isinstance(data, memoryview):
                    self.kept.append((data, hashlib.sha256(data).hexdigest()))
            if route in ("fails", "drain-fails") and len(batches) == 2:
                raise ContentMismatch("the consumer refuses this body")
            digest.update(data)
            if not route.startswith("deferred"):
                return None
            # A write that goes on after `consume` returns, as a disk thread's does: the buffer must stay
            # as it is until the future is done.
            number, seen, written = len(batches), hashlib.sha256(data).digest(), Future[None]()

            def write() -> None:
                time.sleep(0.02)
                if hashlib.sha256(data).digest() != seen:
                    changed.append(number)
                if route == "deferred-fails" and number == 2:
                    written.set_exception(ContentMismatch("the write failed"))
                elif route == "deferred-cancelled" and number == 2:
                    written.cancel()
                else:
                    written.set_result(None)

            threading.Thread(target=write).start()
            writes.append(written)
            return written

        self.reading += 1
        try:
            size = await pump_body(
                request,
                consume,
                BIG_BATCH if route == "big" else BATCH,
                limit=1000 if route == "limited" else None,
                drain_on_error=route == "drain-fails",
                in_place=consume,
            )
        except WeightyardError as exc:
            self.outcomes.append(f"{route}: {exc.code}")
            response = JSONResponse({"code": exc.code}, exc.status)
        except ClientDisconnect:
            self.outcomes.append(f"{route}: disconnect")
            return
        else:
            for written in writes:  # `changed` complete, even where `pump_body` did not wait for them
                await asyncio.wrap_future(written)
            self.outcomes.append(f"{route}: {size}")
            kinds = sorted({kind for kind, _ in batches})
            body = {
                "sha256": digest.hexdigest(),
                "size": size,
                "kinds": kinds,
                "sizes": [n for _, n in batches],
                "changed": changed,
                "pool_held": pool_held[0] if pool_held else None,
            }
            response = JSONResponse(body)
        await response(scope, receive, send)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[int, BodyApp]]:
    app = BodyApp()
    port = free_port()
    wrapped = BodyLimitMiddleware(app, limit=LIMIT, idle_timeout=IDLE)  # type: ignore[arg-type]
    with serving(wrapped, Settings(host="127.0.0.1", port=port)):
        yield port, app


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(30)
    return sock


def _head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _post(path: str, body: bytes) -> bytes:
    return _head(path, {"Content-Length": str(len(body))}) + body


def _read_response(sock: socket.socket, pending: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response from `sock`, after what `pending` holds already; leaves in `pending` what follows it."""
    while b"\r\n\r\n" not in pending:
        piece = sock.recv(65536)
        if not piece:
            raise AssertionError(f"connection closed before a response: {bytes(pending)!r}")
        pending += piece
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        rest += piece
    pending[:] = rest[length:]
    return int(status_line.split()[1]), headers, rest[:length]


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(10)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def _expect(answer: tuple[int, dict[str, str], bytes], data: bytes, kinds: list[str]) -> dict[str, Any]:
    status, _, body = answer
    assert status == 200, body
    got: dict[str, Any] = json.loads(body)
    assert (got["sha256"], got["size"]) == (hashlib.sha256(data).hexdigest(), len(data))
    assert got["kinds"] == kinds
    return got


def test_a_body_sent_in_pieces_comes_in_full_batches_of_reused_buffers_and_the_connection_serves_on(
    served: tuple[int, BodyApp],
) -> None:
    port, _ = served
    data = os.urandom(9 * MIB + 17)
    with _connect(port) as sock:
        # The head and the first bytes in one write (the parser hands those on), the rest in pieces.
        sock.sendall(_head("/echo", {"Content-Length": str(len(data))}) + data[:100])
        for start in range(100, len(data), 3 * MIB):
            time.sleep(0.05)
            sock.sendall(data[start : start + 3 * MIB])
        pending = bytearray()
        got = _expect(_read_response(sock, pending), data, ["memoryview"])
        assert got["sizes"] == [BATCH] * (len(data) // BATCH) + [len(data) % BATCH], "full batches"
        # The same connection: the parser was handed the connection back after the body.
        small = b"hello"
        sock.sendall(_post("/echo", small))
        _expect(_read_response(sock, pending), small, ["memoryview"])
        assert not pending


def test_a_buffer_is_reused_only_once_the_write_its_consumer_left_running_is_done(
    served: tuple[int, BodyApp],
) -> None:
    # The consumer returns a write that goes on for 20 ms in another thread; meanwhile the socket is read
    # into the other buffers, never into that one.
    port, _ = served
    data = os.urandom(4 * MIB + 3)
    with _connect(port) as sock:
        sock.sendall(_post("/deferred", data))
        got = _expect(_read_response(sock, bytearray()), data, ["memoryview"])
    assert got["changed"] == []
    assert len(got["sizes"]) == 17


def test_a_write_left_running_that_is_cancelled_fails_the_body(served: tuple[int, BodyApp]) -> None:
    port, app = served
    with _connect(port) as sock:
        sock.sendall(_post("/deferred-cancelled", os.urandom(2 * MIB)))
        status, _, _ = _read_response(sock, bytearray())
    assert status == 500  # the pump raised the cancellation; the app lets it through
    assert not app.outcomes or not app.outcomes[-1].startswith("deferred-cancelled")


def test_a_write_left_running_that_fails_fails_the_body(served: tuple[int, BodyApp]) -> None:
    port, app = served
    with _connect(port) as sock:
        sock.sendall(_post("/deferred-fails", os.urandom(2 * MIB)))
        status, _, body = _read_response(sock, bytearray())
    assert (status, json.loads(body)["code"]) == (422, "ContentMismatch")
    assert app.outcomes[-1] == "deferred-fails: ContentMismatch"


def test_a_body_waiting_for_its_client_holds_no_thread(served: tuple[int, BodyApp]) -> None:
    # A batch and a half sent, then a pause: the first batch is consumed, and no worker waits for the next.
    port, app = served
    data = os.urandom(3 * BATCH)
    consumed = app.consumed
    with _connect(port) as sock:
        sock.sendall(_head("/echo", {"Content-Length": str(len(data))}) + data[: BATCH + BATCH // 2])
        deadline = time.monotonic() + 30
        while app.consumed == consumed:
            assert time.monotonic() < deadline, "the first batch was not consumed"
            time.sleep(0.01)
        time.sleep(0.1)
        assert not [
            frame
            for top in sys._current_frames().values()
            for frame in _stack(top)
            if frame.f_code.co_name == "_drain" and frame.f_code.co_filename.endswith("common.py")
        ], "a worker thread waits for the body"
        sock.sendall(data[BATCH + BATCH // 2 :])
        _expect(_read_response(sock, bytearray()), data, ["memoryview"])


def _stack(frame: FrameType | None) -> Iterator[FrameType]:
    while frame is not None:
        yield frame
        frame = frame.f_back


def test_pipelined_requests_after_a_body_read_from_the_socket_are_answered_in_order(
    served: tuple[int, BodyApp],
) -> None:
    port, _ = served
    first, second, third = os.urandom(2 * MIB + 5), os.urandom(700 * KIB), b""
    with _connect(port) as sock:
        sock.sendall(_post("/echo", first) + _post("/echo", second) + _post("/echo", third))
        pending = bytearray()
        _expect(_read_response(sock, pending), first, ["memoryview"])
        _expect(_read_response(sock, pending), second, ["memoryview"])
        _expect(_read_response(sock, pending), third, [])


def test_a_body_that_trickles_in_is_read_whole(served: tuple[int, BodyApp]) -> None:
    port, _ = served
    data = os.urandom(300 * KIB)
    with _connect(port) as sock:
        sock.sendall(_head("/echo", {"Content-Length": str(len(data))}))
        for start in range(0, len(data), 1500):
            sock.sendall(data[start : start + 1500])
            if start % (30 * 1500) == 0:
                time.sleep(0.01)
        _expect(_read_response(sock, bytearray()), data, ["memoryview"])


def test_bodies_that_cannot_be_taken_from_the_socket_are_read_through_receive(
    served: tuple[int, BodyApp],
) -> None:
    port, _ = served
    data = os.urandom(MIB + 3)
    url = f"http://127.0.0.1:{port}"
    # Chunked: no length to read to.
    pieces = (data[start : start + 10_000] for start in range(0, len(data), 10_000))
    chunked = httpx.post(f"{url}/echo", content=pieces, timeout=30)
    _expect((chunked.status_code, {}, chunked.content), data, ["bytes"])
    # Expect: 100-continue, which `receive` answers first.
    with _connect(port) as sock:
        sock.sendall(_head("/echo", {"Content-Length": str(len(data)), "Expect": "100-continue"}))
        interim = sock.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), interim
        pending = bytearray(interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :])
        sock.sendall(data)
        _expect(_read_response(sock, pending), data, ["bytes"])
    # Larger than the route's own limit: `receive` reports it as the bytes arrive, as before.
    limited = httpx.post(f"{url}/limited", content=os.urandom(2000), timeout=30)
    assert (limited.status_code, limited.json()["code"]) == (ContentMismatch.status, "ContentMismatch")


def test_a_body_announced_larger_than_the_middleware_allows_is_refused_before_it_is_read(
    served: tuple[int, BodyApp],
) -> None:
    port, app = served
    with _connect(port) as sock:
        sock.sendall(_head("/echo", {"Content-Length": str(LIMIT + 1)}))
        status, _, body = _read_response(sock, bytearray())
    assert (status, json.loads(body)["code"]) == (413, "PayloadTooLarge")
    assert app.outcomes[-1] == "echo: PayloadTooLarge"


def test_a_stalled_body_fails_with_408_and_what_follows_it_is_never_read_as_a_request(
    served: tuple[int, BodyApp],
) -> None:
    port, app = served
    with _connect(port) as sock:
        began = time.monotonic()  # before the server can have seen any of the body
        sock.sendall(_head("/echo", {"Content-Length": str(MIB)}) + b"x" * 1000)
        time.sleep(0.3)
        sock.sendall(b"y" * 1000)  # some progress, then nothing
        status, _, body = _read_response(sock, bytearray())
        assert (status, json.loads(body)["code"]) == (408, "RequestTimeout")
        # Not before a whole idle limit after the last bytes came, which came after `began`. (Timed from the
        # second send, the bound failed when a busy machine overran the sleep by the limit's rest: the 408
        # for the first bytes was then due already.)
        assert time.monotonic() - began >= IDLE
        # The rest of the body, shaped as a request: were it parsed, it would be answered.
        with contextlib.suppress(OSError):
            sock.sendall(_post("/echo", b"smuggled"))
        assert _closed_by_server(sock)
    assert app.outcomes[-1] == "echo: RequestTimeout"
    assert "echo: 8" not in app.outcomes


def test_a_client_that_goes_away_inside_the_body_ends_the_request_and_the_next_one_is_served(
    served: tuple[int, BodyApp],
) -> None:
    port, app = served
    with _connect(port) as sock:
        sock.sendall(_head("/echo", {"Content-Length": str(4 * MIB)}) + os.urandom(MIB))
        time.sleep(0.1)
    deadline = time.monotonic() + 10
    while app.outcomes[-1:] != ["echo: disconnect"]:
        assert time.monotonic() < deadline, app.outcomes
        time.sleep(0.02)
    with _connect(port) as sock:
        sock.sendall(_post("/echo", b"after"))
        _expect(_read_response(sock, bytearray()), b"after", ["memoryview"])


def test_a_consumer_that_refuses_with_drain_is_answered_after_the_whole_body_and_the_connection_serves_on(
    served: tuple[int, BodyApp],
) -> None:
    port, app = served
    data = os.urandom(3 * MIB)
    with _connect(port) as sock:
        sock.sendall(_post("/drain-fails", data))
        pending = bytearray()
        status, _, body = _read_response(sock, pending)
        assert (status, json.loads(body)["code"]) == (ContentMismatch.status, "ContentMismatch")
        sock.sendall(_post("/echo", b"next"))
        _expect(_read_response(sock, pending), b"next", ["memoryview"])
    assert "drain-fails: ContentMismatch" in app.outcomes


def test_a_consumer_that_refuses_without_drain_closes_the_connection_after_its_answer(
    served: tuple[int, BodyApp],
) -> None:
    port, app = served
    size = 8 * MIB
    with _connect(port) as sock:
        sock.sendall(_head("/fails", {"Content-Length": str(size)}) + os.urandom(2 * MIB))
        status, _, body = _read_response(sock, bytearray())
        assert (status, json.loads(body)["code"]) == (ContentMismatch.status, "ContentMismatch")
        # The body's rest, shaped as a request, is never answered: the server's parser lost its place.
        with contextlib.suppress(OSError):
            sock.sendall(_post("/echo", b"smuggled"))
        assert _closed_by_server(sock)
    assert app.outcomes[-1] == "fails: ContentMismatch"
    assert "echo: 8" not in app.outcomes


def _rss() -> int:
    for line in open("/proc/self/status"):  # noqa: SIM115
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * KIB
    raise AssertionError("no VmRSS")


def test_bodies_announced_but_not_sent_take_no_memory(served: tuple[int, BodyApp]) -> None:
    # Each body read from the socket gets two buffers of its batch (8 MiB here): were they allocated up
    # front, a dozen bodies that never come would hold 192 MiB.
    port, app = served
    count, reading = 12, app.reading
    sockets = []
    before = _rss()
    try:
        for _ in range(count):
            sock = _connect(port)
            sock.sendall(_head("/big", {"Content-Length": str(32 * MIB)}) + b"x")
            sockets.append(sock)
        deadline = time.monotonic() + 30
        while app.reading < reading + count:
            assert time.monotonic() < deadline, "the bodies were not taken"
            time.sleep(0.01)
        time.sleep(0.2)
        grown = _rss() - before
    finally:
        for sock in sockets:
            sock.close()
    assert grown < count * 2 * BIG_BATCH // 8, f"{grown} bytes for {count} bodies not sent"
    data = os.urandom(3 * BIG_BATCH + 5)  # and such a body, sent, still arrives whole
    with _connect(port) as sock:
        sock.sendall(_post("/big", data))
        _expect(_read_response(sock, bytearray()), data, ["memoryview"])


@contextlib.contextmanager
def _pool_kept_while_the_test_looks(monkeypatch: pytest.MonkeyPatch) -> Iterator[_BufferPool]:
    """The hub's pool, with its limit, but keeping what it holds for an hour instead of a second: the steps
    of a test that reads what the pool keeps must not depend on each coming within a second of the last body
    (a busy machine can let a second pass, and then the hub's pool rightly holds nothing)."""
    with monkeypatch.context() as patched:
        pool = _BufferPool(common.BODY_BUFFERS_KEPT, linger=3600)
        patched.setattr(common, "_BUFFERS", pool)
        yield pool


def test_the_buffers_of_a_body_are_kept_for_the_next_bodies_and_released_when_idle(
    served: tuple[int, BodyApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh buffer costs a page fault and a zeroed page per 4 KiB; a body takes the buffers of the one
    # before it instead, and an idle hub holds none after BODY_BUFFERS_LINGER_S.
    port, _ = served
    first, second = os.urandom(3 * BATCH + 11), os.urandom(2 * MIB)
    with _pool_kept_while_the_test_looks(monkeypatch) as pool, _connect(port) as sock:
        sock.sendall(_post("/echo", first))
        _expect(_read_response(sock, bytearray()), first, ["memoryview"])
        held = pool.held  # a body gives its buffers back before it is answered
        assert held >= common.DIRECT_BUFFERS * BATCH
        sock.sendall(_post("/echo", second))
        got = _expect(_read_response(sock, bytearray()), second, ["memoryview"])
        # the second body took the four kept buffers of its size before its first batch was consumed
        assert got["pool_held"] == held - common.DIRECT_BUFFERS * BATCH
        assert pool.held >= held  # and so did the second
    # The hub's own pool, after a body, releases what it kept once idle.
    assert common.BODY_BUFFERS_LINGER_S == 1.0  # as docs/security.md and docs/hub.md say
    with _connect(port) as sock:
        sock.sendall(_post("/echo", first))
        _expect(_read_response(sock, bytearray()), first, ["memoryview"])
    deadline = time.monotonic() + 30
    while common._BUFFERS.held:
        assert time.monotonic() < deadline, "the kept buffers were not released"
        time.sleep(0.05)


def test_a_buffer_a_consumer_kept_a_view_of_is_never_handed_to_another_body(
    served: tuple[int, BodyApp],
) -> None:
    port, app = served
    data = os.urandom(4 * BATCH)
    with _connect(port) as sock:
        sock.sendall(_post("/keeps", data))
        _expect(_read_response(sock, bytearray()), data, ["memoryview"])
        for _ in range(3):  # bodies that take every buffer the pool kept, and write into them
            other = os.urandom(4 * BATCH)
            sock.sendall(_post("/echo", other))
            _expect(_read_response(sock, bytearray()), other, ["memoryview"])
    view, digest = app.kept.pop()
    assert hashlib.sha256(view).hexdigest() == digest == hashlib.sha256(data[:BATCH]).hexdigest()
    view.release()


def test_the_pool_keeps_no_more_than_its_limit_and_releases_what_it_kept_once_idle() -> None:
    size, linger = 64 * KIB, 0.2

    async def scenario() -> bool:
        """Whether the run kept to its timing: on a busy machine a sleep can overrun a linger, and the pool
        then rightly releases what a step expects it to hold; such a run is not judged, and is run again."""
        pool = _BufferPool(limit=2 * size, linger=linger)
        began = time.monotonic()  # before the takes
        maps = [pool.take(size) for _ in range(3)]
        for mapped in maps:
            mapped[:5] = b"bytes"
            pool.give(mapped)
        assert pool.held == 2 * size
        assert [mapped.closed for mapped in maps] == [False, False, True]  # beyond the limit: unmapped
        await asyncio.sleep(0.1)
        took = time.monotonic()  # no await until the take: the pool is as it is now
        if took - began >= linger:
            return False
        again = pool.take(size)  # a take within the linger keeps the rest another linger
        assert again is maps[1] and pool.held == size
        await asyncio.sleep(0.15)  # past the first release timer, a linger after the first give
        held, closed = pool.held, maps[0].closed
        if time.monotonic() - took >= linger:
            return False
        assert held == size and not closed
        pool.give(again)
        await asyncio.sleep(0.5)
        assert pool.held == 0 and maps[0].closed and maps[1].closed
        return True

    assert any(asyncio.run(scenario()) for _ in range(5)), "no run kept to its timing"


def test_bodies_at_once_leave_no_more_kept_than_the_limit(
    served: tuple[int, BodyApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Three bodies of three 8 MiB batches at once take 72 MiB of buffers; the pool keeps 32 MiB of them.
    assert common.BODY_BUFFERS_KEPT == 32 * MIB  # as docs/security.md and docs/hub.md say
    port, _ = served
    bodies = [os.urandom(3 * BIG_BATCH) for _ in range(3)]
    with _pool_kept_while_the_test_looks(monkeypatch) as pool:
        sockets = [_connect(port) for _ in bodies]
        try:
            for sock, data in zip(sockets, bodies, strict=True):
                sock.sendall(_head("/big", {"Content-Length": str(len(data))}) + data[:BIG_BATCH])
            for sock, data in zip(sockets, bodies, strict=True):
                sock.sendall(data[BIG_BATCH:])
            for sock, data in zip(sockets, bodies, strict=True):
                _expect(_read_response(sock, bytearray()), data, ["memoryview"])
        finally:
            for sock in sockets:
                sock.close()
        # every body gave its buffers back before its answer
        assert 0 < pool.held <= common.BODY_BUFFERS_KEPT


def test_a_pool_whose_release_timer_went_with_its_loop_is_released_from_the_next_loop() -> None:
    # One loop per process in the hub; tests run one after another, and a timer on a closed loop never fires.
    size, linger = 64 * KIB, 0.2

    async def give_one() -> mmap.mmap:
        mapped = pool.take(size)
        pool.give(mapped)
        return mapped

    for _ in range(5):
        pool = _BufferPool(limit=size, linger=linger)
        began = time.monotonic()
        first = asyncio.run(give_one())
        # The loop closed before its timer was due: else (a busy machine) the timer may have fired, and the
        # pool rightly released the buffer; that run proves nothing, and is made again.
        if time.monotonic() - began < linger:
            break
    else:
        raise AssertionError("no loop closed within the linger")
    assert pool.held == size and not first.closed

    async def later() -> None:
        again = pool.take(size)
        assert again is first
        pool.give(again)
        await asyncio.sleep(0.5)
        assert pool.held == 0 and first.closed

    asyncio.run(later())


def _vm_flags(mapped: mmap.mmap) -> set[str]:
    """The kernel's flags for the map (`/proc/self/smaps`, VmFlags): `hg` is the advice for huge pages."""
    pointer = ctypes.c_char.from_buffer(mapped)
    address = ctypes.addressof(pointer)
    del pointer
    current: tuple[int, int] | None = None
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(" ", 1)[0]
        if "-" in head and ":" not in head:
            start, end = (int(part, 16) for part in head.split("-"))
            current = (start, end)
        elif line.startswith("VmFlags:") and current and current[0] <= address < current[1]:
            return set(line.split()[1:])
    raise AssertionError("the map is not in /proc/self/smaps")


def test_a_body_writes_from_huge_pages_once_it_has_sent_a_whole_batch() -> None:
    # From huge pages a 4 MiB write around the page cache is one request to the disk, not five
    # (common._HUGE_PAGES says why). A huge page is resident whole once a byte is in it: the buffer a body
    # writes first is never a fresh huge one, so a body announced and not sent holds one small page.
    async def scenario() -> None:
        pool = _BufferPool(limit=2 * 4 * MIB, linger=3600)
        first, later = pool.take(4 * MIB), pool.take(4 * MIB, huge=True)
        assert "hg" not in _vm_flags(first)
        assert "hg" in _vm_flags(later)
        pool.give(first)
        pool.give(later)
        # Kept huge buffers go first, to a body's first buffer too (already resident); a kept small one only
        # to a first buffer, a later one being a fresh huge one rather than a kept small one.
        again = [pool.take(4 * MIB), pool.take(4 * MIB, huge=True), pool.take(4 * MIB)]
        assert [mapped is later for mapped in again] == [True, False, False]
        assert again[2] is first
        assert "hg" in _vm_flags(again[1])
        # A full pool keeps a huge buffer given back rather than a small one.
        pool.give(again[2])
        pool.give(again[0])
        assert pool.held == 2 * 4 * MIB
        pool.give(again[1])
        assert (pool.held, first.closed, again[1].closed) == (2 * 4 * MIB, True, False)
        for mapped in again:
            mapped.close()

    asyncio.run(scenario())

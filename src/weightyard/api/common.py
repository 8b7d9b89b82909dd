"""Helpers shared by the routers: the error mapper, the principal, raw-path parsing, dates, URLs."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import functools
import mmap
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import Any
from urllib.parse import unquote

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from weightyard import zero_copy
from weightyard.auth import Principal
from weightyard.errors import (
    ContentCollected,
    ContentMismatch,
    EntryNotFound,
    InvalidCredentials,
    PayloadTooLarge,
    RateLimited,
    RequestTimeout,
    ScanPending,
    WeightyardError,
)
from weightyard.hub import Hub
from weightyard.zero_copy import SegmentStream

# The web pages' sign-in cookie; it holds an access token.
SESSION_COOKIE = "weightyard_token"
# URL prefix of file routes per repo type, as on the Hugging Face Hub.
TYPE_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
PLURAL_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
# Where a request's principal is kept once found.
_PRINCIPAL_KEY = "weightyard.principal"
# Buffers of a body read straight from the socket (`_pump_direct`): the socket is read up to this many batches
# ahead of the worker that consumes them, and a consumer may leave a batch's disk write running while it takes
# the next. With two, the worker waited for each write and the loop for the worker: 512 MiB of upload parts
# took 0.87 s on their own against 0.63 s with four (docs/benchmarks.md, session 13).
DIRECT_BUFFERS = 4


def error_response(exc: WeightyardError, base: str = "", as_text: bool = False) -> Response:
    """The one error mapper: JSON body plus the headers the Hugging Face client reads. `base` is the hub's
    URL, for messages that point at a page; `as_text` answers the message as plain text, for callers that
    ask for it (`RepoCard.validate` sends `Accept: text/plain` and shows the body as is)."""
    message = exc.message_at(base)
    body: dict[str, Any] = {"error": message, "code": exc.code}
    body.update({k: v for k, v in exc.details.items() if isinstance(v, str | int | bool | list | dict)})
    headers = {
        "X-Error-Code": exc.code,
        "X-Error-Message": header_text(message, 500),
    }
    if isinstance(exc, EntryNotFound) and exc.commit:
        headers["X-Repo-Commit"] = exc.commit
    if isinstance(exc, RateLimited | ScanPending | ContentCollected):
        headers["Retry-After"] = str(exc.retry_after)
    if exc.status in (PayloadTooLarge.status, RequestTimeout.status):
        # The rest of the body may still be on its way: close rather than read it to keep the connection.
        headers["Connection"] = "close"
    if as_text:
        return PlainTextResponse(message, status_code=exc.status, headers=headers)
    return JSONResponse(body, status_code=exc.status, headers=headers)


def header_text(text: str, limit: int) -> str:
    """`text` as a header value: printable ASCII only (a CR or LF from a client's input would otherwise
    make the server drop the response), at most `limit` characters."""
    return "".join(c if " " <= c <= "~" else "?" for c in text[:limit])


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def principal_of(request: Request) -> Principal | None:
    """The caller, from `Authorization: Bearer <token>`; None when anonymous (see `_authenticate`).

    Found once per request and kept in its scope: the rate limiter and every route that asks share one
    answer (and one token lookup).
    """
    if _PRINCIPAL_KEY not in request.scope:
        request.scope[_PRINCIPAL_KEY] = _authenticate(request)
    principal: Principal | None = request.scope[_PRINCIPAL_KEY]
    return principal


def _authenticate(request: Request) -> Principal | None:
    """The caller, from `Authorization: Bearer <token>`; None when anonymous.

    A browser signed in to the web pages carries its token in the session cookie instead. The cookie is
    honoured for reads (GET, HEAD) only, so a cross-site form can never write with it; a stale cookie
    reads as anonymous.
    """
    header = request.headers.get("authorization", "")
    if not header:
        secret = request.cookies.get(SESSION_COOKIE)
        if not secret or request.method not in ("GET", "HEAD"):
            return None
        try:
            return hub_of(request).accounts.authenticate(
                secret, origin=request.client.host if request.client else ""
            )
        except InvalidCredentials:
            return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidCredentials("Invalid credentials in Authorization header")
    origin = request.client.host if request.client else ""
    return hub_of(request).accounts.authenticate(token.strip(), origin=origin)


async def principal_async(request: Request) -> Principal | None:
    return await run_in_threadpool(principal_of, request)


def names_a_repo(path: str) -> bool:
    """Whether an unrouted path is a Hub repo route (`/api/models/gpt2`, `/gpt2/resolve/main/x`): only a
    repo id that is not `namespace/name` lands there unrouted, and the Hub answers those RepoNotFound."""
    segments = path.strip("/").split("/")
    if len(segments) >= 3 and segments[0] == "api" and segments[1] in PLURAL_TYPES:
        return True
    return "resolve" in segments[1:3]


def raw_segments(request: Request) -> list[str]:
    """Path segments decoded one by one from the raw path, so `refs%2Fpr%2F1` stays one segment."""
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    return [unquote(segment, errors="strict") for segment in path.split("/")[1:]]


def split_revision(segments: list[str]) -> tuple[str, list[str]]:
    """The revision and the remaining segments. Unencoded `refs/pr/N` and `refs/convert/X` are kept whole."""
    if not segments or not segments[0]:
        return "main", []
    if segments[0] == "refs" and len(segments) >= 3 and segments[1] in ("pr", "convert", "heads", "tags"):
        return "/".join(segments[:3]), segments[3:]
    return segments[0], segments[1:]


def iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def base_url(request: Request) -> str:
    configured = hub_of(request).settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


def repo_url(request: Request, repo_type: str, repo_id: str) -> str:
    return f"{base_url(request)}/{TYPE_PREFIX[repo_type]}{repo_id}"


async def pump_body(
    request: Request,
    consume: Callable[[bytes], object],
    batch_size: int,
    limit: int | None = None,
    drain_on_error: bool = False,
    in_place: Callable[[memoryview], object] | None = None,
) -> int:
    """Feed the request body to `consume` in batches of about `batch_size` bytes, each in a worker thread
    while the next batch is being received, so network, parsing, hashing and disk overlap. Returns the
    number of bytes received.

    A body longer than `limit` is a `ContentMismatch`. With `drain_on_error`, a failure of `consume` is
    raised only once the whole body has been read, so the client reads the error instead of a reset.

    `in_place`, when given, is `consume` for a batch handed as a view of a buffer that is reused once it
    returns, or, when it returns a `concurrent.futures.Future` (a write still reading the buffer), once that
    is done; it must keep nothing of the buffer beyond that. Where the server offers it
    (`zero_copy.RECEIVE`), the body is then received from the socket straight into a few buffers of
    `batch_size` taken in turn (`_pump_direct`), with no message per socket read and no joining.
    """
    if in_place is not None:
        direct = _take_direct(request, limit)
        if direct is not None:
            return await _pump_direct(direct, in_place, batch_size, drain_on_error)
    received = 0
    parts: list[bytes] = []
    held = 0
    batches = _Batches(drain_on_error)
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if limit is not None and received > limit:
                raise ContentMismatch(f"the body is larger than the announced {limit} bytes")
            if batches.failure is not None:
                continue
            parts.append(chunk)
            held += len(chunk)
            if held >= batch_size:
                data, parts, held = b"".join(parts), [], 0
                await batches.settle()
                batches.start(consume, data)
        await batches.settle()
        if batches.failure is None and parts:
            await run_in_threadpool(consume, b"".join(parts))
    finally:
        await batches.close()
    batches.raise_failure()
    return received


class _Batches:
    """The batch a worker thread consumes while `pump_body` receives the next one. With `drain_on_error`, a
    failure is kept (`failure`) until the body has been read, and no batch starts after it."""

    def __init__(self, drain_on_error: bool) -> None:
        self._drain_on_error = drain_on_error
        self._pending: asyncio.Future[object] | None = None
        self.failure: BaseException | None = None

    def start(self, consume: Callable[[Any], object], data: object) -> None:
        if self.failure is None:
            self._pending = asyncio.ensure_future(run_in_threadpool(consume, data))

    async def settle(self) -> None:
        """Wait for the batch being consumed, if any."""
        if self._pending is None:
            return
        task, self._pending = self._pending, None
        try:
            await task
        except Exception as exc:
            if not self._drain_on_error:
                raise
            self.failure = exc

    async def close(self) -> None:
        """Never leave a write running behind the caller's abort."""
        if self._pending is not None:
            with contextlib.suppress(BaseException):
                await self._pending

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure


def _take_direct(request: Request, limit: int | None) -> zero_copy.DirectBody | None:
    """The request's body straight from the socket, where the server offers it and it fits `limit` (a body
    announced larger goes through `receive`, which reports it as the bytes arrive)."""
    offer = request.scope.get("extensions", {}).get(zero_copy.RECEIVE)
    if offer is None:
        return None
    body: zero_copy.DirectBody | None = offer["take"](limit)
    return body


async def _pump_direct(
    body: zero_copy.DirectBody,
    consume: Callable[[memoryview], object],
    batch_size: int,
    drain_on_error: bool,
) -> int:
    """`pump_body` for a body read from the socket, into up to `DIRECT_BUFFERS` buffers of `batch_size` taken
    in turn: each full batch joins `_InOrder`'s queue, consumed in order by a worker thread, while the loop
    reads the next batches into free buffers. The buffers come from `_BUFFERS`: kept from the bodies before,
    else fresh anonymous maps, whose pages exist only once bytes are written into them."""
    received = 0
    size = max(1, batch_size)  # one size for every body: its buffers can serve the next ones
    count = max(1, min(DIRECT_BUFFERS, -(-body.left // size)))  # no more buffers than the body has batches
    # Every buffer but the first is written only once a whole batch has come (see `_HUGE_PAGES`).
    maps = [_BUFFERS.take(size, huge=index > 0) for index in range(count)]
    views = [memoryview(mapped) for mapped in maps]
    batches = _InOrder(consume, views)
    try:
        while body.left:
            index = await batches.free.get()
            try:
                filled = await body.read_into(views[index])
            except BaseException:
                batches.free.put_nowait(index)
                raise
            received += filled
            if batches.failure is not None:
                batches.free.put_nowait(index)
                if not drain_on_error:
                    break
                continue  # read to its end, for the client to read the error
            batches.submit(index, filled)
    finally:
        await batches.close()  # never leave a write running behind the caller's abort
        body.close()
        for view, mapped in zip(views, maps, strict=True):
            view.release()
            _BUFFERS.give(mapped)
    if batches.failure is not None:
        raise batches.failure
    return received


# A body's buffers are advised for transparent huge pages where the kernel has them (Linux, `madvise` mode
# included), so each is two physically contiguous 2 MiB pages instead of a thousand scattered 4 KiB ones.
# An upload's bytes go from them to the disk around the page cache (storage/local.py, `_AlignedWrites`), and
# the disk takes a write in requests of at most `max_segments` pieces of memory (254 on this project's
# machine): from small pages a 4 MiB write became five requests of under 1 MiB, from huge pages it is one.
# 512 MiB written that way took 0.87-1.04 s against 0.94-1.56 s from small pages, and `cp` + `sync` 1.10-1.31
# s in the same rounds (bench/disk_pages.py; docs/benchmarks.md, session 18). A huge page is zeroed
# and resident whole once a byte is written into it, so a body's first buffer is never a fresh huge one: a
# body announced and not sent holds a small page, and a huge one only once it has sent a whole batch.
_HUGE_PAGES: int | None = getattr(mmap, "MADV_HUGEPAGE", None)
_HUGE_PAGE = 2 * 1024 * 1024


class _BufferPool:
    """The buffers of `_pump_direct`, kept between bodies.

    A fresh map costs a page fault and a zeroed page per 4 KiB the first time the socket writes into it: a
    third of the event loop's CPU in an upload on this project's machine (docs/benchmarks.md, session 14). A
    body takes kept buffers of its size first and fresh private maps beyond them; when it ends, its buffers
    are kept, up to `limit` bytes in all, unless a view of one is still alive (a consumer that kept one, a
    traceback): that map is dropped with its last view, never handed to another body. What is kept is
    released once no body has taken a buffer for `linger` seconds, so an idle hub holds none. A kept buffer
    still holds bytes of the body before; a body reads only what it received into it.
    """

    def __init__(self, limit: int, linger: float) -> None:
        self._limit = limit
        self._linger = linger
        self._lock = threading.Lock()
        self._kept: dict[tuple[int, bool], list[mmap.mmap]] = {}  # by size and whether advised for huge pages
        self._advised: weakref.WeakSet[mmap.mmap] = weakref.WeakSet()  # maps advised for huge pages
        self._huge_pages_work = True
        self._held = 0
        self._last_take = 0.0
        # The loop whose timer will release what is kept (a process runs one; tests run several, one after
        # another, and a timer on a loop that closed never fires).
        self._release_loop: asyncio.AbstractEventLoop | None = None

    @property
    def held(self) -> int:
        """Bytes kept now."""
        return self._held

    def take(self, size: int, huge: bool = False) -> mmap.mmap:
        """A buffer of `size` bytes: a kept one advised for huge pages first, then (unless `huge`) a kept one
        of small pages, else a fresh map, advised for huge pages when `huge` asks for it. A body's first
        buffer asks for small pages (see `_HUGE_PAGES`); it still takes a kept huge one, already resident."""
        advise = huge and _HUGE_PAGES is not None and size % _HUGE_PAGE == 0 and self._huge_pages_work
        with self._lock:
            self._last_take = time.monotonic()
            for kind in (True,) if advise else (True, False):
                kept = self._kept.get((size, kind))
                if kept:
                    self._held -= size
                    return kept.pop()
        mapped = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if advise and _HUGE_PAGES is not None:
            try:
                mapped.madvise(_HUGE_PAGES)
                self._advised.add(mapped)
            except OSError:  # a kernel without transparent huge pages: small pages, kept as such
                self._huge_pages_work = False
        return mapped

    def give(self, mapped: mmap.mmap) -> None:
        """Keep `mapped` for the next body, or close it; on the event loop (it may start the idle timer)."""
        size = len(mapped)
        try:
            mapped.resize(size)  # BufferError while a view of it is alive; a no-op otherwise
        except BufferError:
            return  # the map is unmapped with its last view
        evicted: list[mmap.mmap] = []
        with self._lock:
            huge = mapped in self._advised
            if huge:  # a huge buffer is kept rather than small ones: those are what a body writes first
                for (_, kind), kept in self._kept.items():
                    while not kind and kept and self._held + size > self._limit:
                        evicted.append(kept.pop())
                        self._held -= len(evicted[-1])
            keep = self._held + size <= self._limit
            if keep:
                self._kept.setdefault((size, huge), []).append(mapped)
                self._held += size
        for dropped in evicted:
            dropped.close()
        if not keep:
            mapped.close()
        elif self._release_loop is None or self._release_loop.is_closed():
            self._release_later(self._linger)

    def _release_later(self, delay: float) -> None:
        self._release_loop = asyncio.get_running_loop()
        self._release_loop.call_later(delay, self._release_if_idle)

    def _release_if_idle(self) -> None:
        self._release_loop = None
        with self._lock:
            idle = time.monotonic() - self._last_take
            dropped: list[mmap.mmap] = []
            if idle >= self._linger:
                dropped = [mapped for kept in self._kept.values() for mapped in kept]
                self._kept.clear()
                self._held = 0
            held = self._held
        for mapped in dropped:
            mapped.close()
        if held:
            self._release_later(self._linger - idle)


# Body buffers kept between uploads: two bodies' worth (an in-order push sends the next part while the hub
# finishes the one before), released after a second without a body.
BODY_BUFFERS_KEPT = 2 * DIRECT_BUFFERS * 4 * 1024 * 1024
BODY_BUFFERS_LINGER_S = 1.0
_BUFFERS = _BufferPool(BODY_BUFFERS_KEPT, BODY_BUFFERS_LINGER_S)


class _InOrder:
    """The batches of one `_pump_direct` body, consumed in the order they arrived by one worker thread at a
    time. A worker starts when a batch is queued and none runs, and ends once the queue is empty: a slow body
    holds no thread between its batches. A buffer goes back to `free` once its batch is consumed and, when
    `consume` returned a `Future`, once that is done. The first failure (of `consume` or of such a future) is
    kept in `failure`; the batches after it are not consumed."""

    def __init__(self, consume: Callable[[memoryview], object], views: list[memoryview]) -> None:
        self._loop = asyncio.get_running_loop()
        self._consume = consume
        self._views = views
        self._lock = threading.Lock()
        self._queued: collections.deque[tuple[int, int]] = collections.deque()
        self._running = False
        self._workers: list[asyncio.Future[None]] = []
        self.free: asyncio.Queue[int] = asyncio.Queue()
        for index in range(len(views)):
            self.free.put_nowait(index)
        self.failure: BaseException | None = None

    def submit(self, index: int, count: int) -> None:
        """Queue the batch in buffer `index` (its first `count` bytes); start a worker if none runs."""
        with self._lock:
            self._queued.append((index, count))
            if self._running:
                return
            self._running = True
        self._workers = [worker for worker in self._workers if not worker.done()]
        self._workers.append(asyncio.ensure_future(run_in_threadpool(self._drain)))

    def _drain(self) -> None:
        while True:
            with self._lock:
                if not self._queued:
                    self._running = False
                    return
                index, count = self._queued.popleft()
            if self.failure is not None:
                self._release(index)
                continue
            try:
                pending = self._consume(self._views[index][:count])
            except BaseException as exc:  # kept, and raised by the pump once its buffers are back
                self._fail(exc)
                self._release(index)
                continue
            if isinstance(pending, Future):
                pending.add_done_callback(functools.partial(self._settled, index))
            else:
                self._release(index)

    def _settled(self, index: int, done: Future[Any]) -> None:
        if done.cancelled():
            self._fail(CancelledError("a write of the body was cancelled"))
        elif (exc := done.exception()) is not None:
            self._fail(exc)
        self._release(index)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = exc

    def _release(self, index: int) -> None:
        self._loop.call_soon_threadsafe(self.free.put_nowait, index)

    async def close(self) -> None:
        """Wait for the workers, then for every buffer to come back (its batch consumed, its write done)."""
        for worker in self._workers:
            with contextlib.suppress(BaseException):
                await worker
        for _ in self._views:
            await self.free.get()


class SegmentResponse(Response):
    """A response whose body the server sends itself, file ranges with `sendfile` (weightyard.zero_copy): only
    for a scope that has the extension. Its stream is closed however the response ends."""

    def __init__(self, stream: SegmentStream, status_code: int, headers: dict[str, str]) -> None:
        super().__init__(status_code=status_code, headers=headers)
        self.stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            start = {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
            await send(start)
            await scope["extensions"][zero_copy.EXTENSION]["send"](self.stream)
        finally:
            self.stream.close()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

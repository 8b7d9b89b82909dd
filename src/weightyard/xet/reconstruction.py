"""Reconstruction: which xorb byte ranges make up a file (or a byte range of it), for Xet and plain clients.

`plan_reconstruction` answers `/v1` and `/v2/reconstructions` (Xet specification): the terms that cover the
requested range, trimmed to whole chunks, and per xorb the merged chunk ranges with their serialized byte
ranges, which the client fetches from signed URLs. `iter_file_bytes` follows the same plan on the server to
stream a file's bytes to clients that do not speak Xet.
"""

from __future__ import annotations

import collections
import functools
import io
import mmap
import os
import re
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from weightyard.xet.errors import (
    CorruptXorb,
    InvalidRange,
    RangeNotSatisfiable,
    ShardVerificationError,
    XetError,
)
from weightyard.xet.hashes import chunk_hash, hash_to_string
from weightyard.xet.shard import FileTerm, XorbLookup, stored_xorb
from weightyard.xet.xorb import (
    CHUNK_HEADER_LEN,
    CompressionScheme,
    XorbChunk,
    XorbInfo,
    chunk_header,
    decode_chunk_payload,
)
from weightyard.zero_copy import FileRange, Segment, Window

# A file is rebuilt in pieces of up to this many bytes: few, large pieces keep the per-piece costs (a read, a
# thread hop, a socket write) small against the bytes moved, while a few in flight still bound memory.
READ_WINDOW = 8 * 1024 * 1024
# Chunks read at once: two buffers each (header and payload), and a scatter read takes at most 1024 (IOV_MAX).
_WINDOW_CHUNKS = 512

T = TypeVar("T")
# Linux maps a window's pages in one call instead of a fault per page.
_MAP_POPULATE: int = getattr(mmap, "MAP_POPULATE", 0)

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_range_header(header: str | None, size: int) -> tuple[int, int]:
    """The `[start, end)` a `Range: bytes=...` header asks of a `size`-byte file (the whole file when None).

    >>> parse_range_header("bytes=0-9", 100), parse_range_header("bytes=-10", 100)
    ((0, 10), (90, 100))
    """
    if header is None:
        return 0, size
    match = _RANGE.fullmatch(header.strip())
    if match is None or match.groups() == ("", ""):
        raise InvalidRange(f"unsupported Range header {header!r}")
    first, last = match.groups()
    if not first:
        if int(last) == 0:
            raise RangeNotSatisfiable("a suffix range of zero bytes selects nothing")
        return max(0, size - int(last)), size
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if last and int(last) < start:
        raise InvalidRange(f"Range header {header!r} ends before it starts")
    if start >= size and not (start == 0 and size == 0):
        raise RangeNotSatisfiable(f"range starts at {start}, the file has {size} bytes")
    return start, end


@dataclass(frozen=True, slots=True)
class PlannedTerm:
    """A term of the answer: chunks `[chunk_start, chunk_end)` of a xorb, `unpacked_len` bytes together."""

    xorb_hash: bytes
    chunk_start: int
    chunk_end: int
    unpacked_len: int


@dataclass(frozen=True, slots=True)
class FetchRange:
    """Chunks `[chunk_start, chunk_end)` of a xorb, serialized at bytes `[byte_start, byte_end]` inclusive."""

    chunk_start: int
    chunk_end: int
    byte_start: int
    byte_end: int


UrlSigner = Callable[[bytes, Sequence[FetchRange]], str]
"""Makes the fetch URL for some ranges of a xorb: the client sends no Authorization there, so it is signed."""


@dataclass(frozen=True, slots=True)
class Reconstruction:
    """How to rebuild bytes `[start, end)` of a file from xorbs."""

    start: int
    end: int
    offset_into_first_range: int
    terms: tuple[PlannedTerm, ...]
    fetch: dict[bytes, tuple[FetchRange, ...]]
    """Per xorb, in order of first use: merged chunk ranges, sorted."""
    tables: dict[bytes, XorbInfo] = field(repr=False, compare=False)
    """The chunk tables the plan was made from."""

    def to_v1(self, sign: UrlSigner) -> dict[str, Any]:
        """The JSON body of `GET /v1/reconstructions/{file}`: one URL per fetch range."""
        return {
            "offset_into_first_range": self.offset_into_first_range,
            "terms": self._terms_json(),
            "fetch_info": {
                hash_to_string(xorb): [
                    {
                        "range": {"start": r.chunk_start, "end": r.chunk_end},
                        "url": sign(xorb, (r,)),
                        "url_range": {"start": r.byte_start, "end": r.byte_end},
                    }
                    for r in ranges
                ]
                for xorb, ranges in self.fetch.items()
            },
        }

    def to_v2(self, sign: UrlSigner) -> dict[str, Any]:
        """The JSON body of `GET /v2/reconstructions/{file}`: one URL per xorb, listing its ranges."""
        return {
            "offset_into_first_range": self.offset_into_first_range,
            "terms": self._terms_json(),
            "xorbs": {
                hash_to_string(xorb): [
                    {
                        "url": sign(xorb, ranges),
                        "ranges": [
                            {
                                "chunks": {"start": r.chunk_start, "end": r.chunk_end},
                                "bytes": {"start": r.byte_start, "end": r.byte_end},
                            }
                            for r in ranges
                        ],
                    }
                ]
                for xorb, ranges in self.fetch.items()
            },
        }

    def _terms_json(self) -> list[dict[str, Any]]:
        return [
            {
                "hash": hash_to_string(t.xorb_hash),
                "unpacked_length": t.unpacked_len,
                "range": {"start": t.chunk_start, "end": t.chunk_end},
            }
            for t in self.terms
        ]


def _check_term(term: FileTerm, stored: XorbInfo) -> None:
    if not 0 <= term.chunk_start < term.chunk_end <= len(stored.chunks):
        raise ShardVerificationError(
            f"a file term names chunks [{term.chunk_start}, {term.chunk_end}) of xorb "
            f"{hash_to_string(term.xorb_hash)}, which has {len(stored.chunks)}"
        )
    if term.unpacked_len != sum(c.length for c in stored.chunks[term.chunk_start : term.chunk_end]):
        raise ShardVerificationError("a file term's length does not match the chunks it names")


def file_size(terms: Sequence[FileTerm]) -> int:
    return sum(term.unpacked_len for term in terms)


def plan_reconstruction(
    terms: Sequence[FileTerm], lookup: XorbLookup, start: int = 0, end: int | None = None
) -> Reconstruction:
    """Plan how to rebuild bytes `[start, end)` of the file made of `terms` (by default the whole file).

    Use `parse_range_header` first for a Range header; it raises the 416 case.
    """
    end = file_size(terms) if end is None else end
    planned: list[PlannedTerm] = []
    wanted: dict[bytes, list[tuple[int, int]]] = {}
    tables: dict[bytes, XorbInfo] = {}
    offset_into_first = 0
    position = 0
    for term in terms:
        if position >= end:
            break
        term_end = position + term.unpacked_len
        if term_end <= start:
            position = term_end
            continue
        stored = tables.get(term.xorb_hash)
        if stored is None:
            stored = tables[term.xorb_hash] = stored_xorb(lookup, term.xorb_hash, "a file term")
        _check_term(term, stored)
        first = term.chunk_start
        while position + stored.chunks[first].length <= start:
            position += stored.chunks[first].length
            first += 1
        if not planned:
            offset_into_first = start - position
        last, covered = first, 0
        while last < term.chunk_end and position + covered < end:
            covered += stored.chunks[last].length
            last += 1
        planned.append(PlannedTerm(term.xorb_hash, first, last, covered))
        wanted.setdefault(term.xorb_hash, []).append((first, last))
        position = term_end
    fetch = {xorb: _merged_fetch_ranges(ranges, tables[xorb]) for xorb, ranges in wanted.items()}
    return Reconstruction(start, end, offset_into_first, tuple(planned), fetch, tables)


def _merged_fetch_ranges(ranges: list[tuple[int, int]], stored: XorbInfo) -> tuple[FetchRange, ...]:
    merged: list[list[int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return tuple(
        FetchRange(first, last, stored.chunks[first].start, stored.chunks[last - 1].end - 1)
        for first, last in merged
    )


XorbReader = Callable[[bytes, int, Sequence[memoryview]], int]
"""Fills `buffers` in order with the serialized bytes of a stored xorb from offset `start` on, in one scatter
read (like `os.preadv`: each byte is copied once, straight into place); returns how many bytes it placed,
fewer only where the object ends."""


def iter_file_bytes(
    terms: Sequence[FileTerm],
    lookup: XorbLookup,
    read: XorbReader,
    start: int = 0,
    end: int | None = None,
    *,
    rehash: bool = True,
    reuse: bytearray | None = None,
    ahead: ReadAhead | None = None,
) -> Iterator[memoryview]:
    """Stream bytes `[start, end)` of a file from its xorbs, in pieces of up to `READ_WINDOW` bytes.

    Every chunk header is compared with the server's chunk table and every chunk is re-hashed, so a damaged
    object fails loudly (`CorruptXorb`) instead of serving wrong bytes. Each piece is a fresh buffer that is
    never written again, so it may be handed to a socket that sends it later.

    `rehash=False` skips the chunk hashes, for a caller that hashes every byte itself against a digest it
    was given (a shard's sha256 claim): a byte changed in storage then fails that comparison instead. A
    caller that is done with each piece before it asks for the next may pass a `reuse` buffer of
    `READ_WINDOW` bytes: every piece is then a view into it (no fresh allocation per window). With `ahead`,
    the next pieces are read and checked by its threads while the caller sends the current one.
    """
    plan = plan_reconstruction(terms, lookup, start, end)
    if reuse is not None:
        windows = _windows(plan, read, rehash, lambda _: memoryview(reuse))
    elif ahead is not None:
        windows = _windows(plan, read, rehash, ahead.buffer)
    else:
        windows = _windows(plan, read, rehash, lambda size: memoryview(bytearray(size)))
    skip = plan.offset_into_first_range
    remaining = plan.end - plan.start
    pieces = (window() for window in windows) if ahead is None else ahead.run(windows)
    try:
        for piece in pieces:
            piece = piece[skip : skip + remaining]
            skip = 0
            if piece:
                remaining -= len(piece)
                yield piece
            if remaining == 0:
                return
    finally:
        pieces.close()


def _windows(
    plan: Reconstruction, read: XorbReader, rehash: bool, buffer: Callable[[int], memoryview]
) -> Iterator[Callable[[], memoryview]]:
    """The reads that make up the plan, in order, each one window of consecutive chunks of one xorb."""
    for stored, chunks, raw in window_groups(plan):
        yield functools.partial(_read_window, stored, chunks, raw, read, rehash, buffer)


def window_groups(plan: Reconstruction) -> Iterator[tuple[XorbInfo, Sequence[XorbChunk], int]]:
    """The plan's chunks in windows: consecutive chunks of one xorb, with the bytes they unpack to (at most
    `READ_WINDOW`, unless one chunk is larger)."""
    for term in plan.terms:
        stored = plan.tables[term.xorb_hash]
        first = term.chunk_start
        while first < term.chunk_end:
            last, raw = first + 1, stored.chunks[first].length
            while (
                last < term.chunk_end
                and last - first < _WINDOW_CHUNKS
                and raw + stored.chunks[last].length <= READ_WINDOW
            ):
                raw += stored.chunks[last].length
                last += 1
            yield stored, stored.chunks[first:last], raw
            first = last


def checked_window(
    open_xorb: Callable[[], io.FileIO], stored: XorbInfo, chunks: Sequence[XorbChunk]
) -> Window:
    """Chunks of one stored xorb (its file opened by `open_xorb`), checked as `iter_file_bytes` checks them
    (every header against the chunk table, every chunk re-hashed), as segments a server sends itself: the
    file ranges of uncompressed payloads (sent from the file, never read into the process) and the decoded
    bytes of compressed ones. The window holds the file open until it is closed. The hash is taken of the
    file's pages through a read-only map, which the send then reads again: stored objects are never
    written in place.
    """
    handle = open_xorb()
    try:
        segments = _checked_segments(handle.fileno(), stored, chunks)
    except BaseException:
        handle.close()
        raise
    return Window(segments, handle.close)


def _checked_segments(fd: int, stored: XorbInfo, chunks: Sequence[XorbChunk]) -> list[Segment]:
    name = hash_to_string(stored.hash)
    start, end = chunks[0].start, chunks[-1].end
    if os.fstat(fd).st_size < end:
        raise CorruptXorb(f"stored xorb {name} is shorter than its chunk table")
    base = start - start % mmap.ALLOCATIONGRANULARITY
    flags = mmap.MAP_SHARED | _MAP_POPULATE
    # Unmapped when the last view of it goes (no explicit close: one would fail while a view of a chunk that
    # raised is still held by the traceback).
    view = memoryview(mmap.mmap(fd, end - base, flags=flags, prot=mmap.PROT_READ, offset=base))
    segments: list[Segment] = []
    for chunk in chunks:
        header_at, payload_at = chunk.start - base, chunk.start - base + CHUNK_HEADER_LEN
        payload_len = chunk.end - chunk.start - CHUNK_HEADER_LEN
        if view[header_at:payload_at] != chunk_header(chunk.scheme, payload_len, chunk.length):
            raise CorruptXorb(f"stored xorb {name} has chunk headers that do not match its chunk table")
        payload = view[payload_at : payload_at + payload_len]
        if chunk.scheme is CompressionScheme.NONE:
            if payload_len != chunk.length:
                raise CorruptXorb(f"stored xorb {name}: an uncompressed chunk has two lengths in its table")
            data: bytes | memoryview = payload
            segment: Segment = FileRange(fd, chunk.start + CHUNK_HEADER_LEN, payload_len)
        else:
            try:
                data = segment = decode_chunk_payload(chunk.scheme, bytes(payload), chunk.length)
            except XetError as exc:
                raise CorruptXorb(f"stored xorb {name}: {exc.message}") from None
        if chunk_hash(data) != chunk.hash:
            raise CorruptXorb(f"stored xorb {name} does not match its chunk table")
        segments.append(segment)
    return segments


class ReadAhead:
    """Threads that read and check the next windows of files being streamed while their senders send.

    Re-hashing every chunk costs as much CPU as sending the bytes: one stream at a time would leave a core
    idle. Each stream keeps at most `depth` windows ahead of its sender, and all streams of the process
    together at most `windows`, so the memory this adds is bounded whatever the number of downloads; a
    stream that finds no window free reads its next one itself.

    The windows' buffers (`READ_WINDOW` bytes) are used again once no view of them is left (the socket sent
    them): a fresh buffer of that size costs its page faults and zeroing on every window, about as much CPU
    as reading the bytes into it. Up to `windows` buffers are kept.
    """

    def __init__(self, threads: int, windows: int, depth: int) -> None:
        self._threads = threads
        self._depth = depth
        self._windows = windows
        self._free = windows  # windows not taken by a stream; under `_lock`
        self._pool: ThreadPoolExecutor | None = None
        self._buffers: list[bytearray] = []
        self._lock = threading.Lock()

    @property
    def free_windows(self) -> int:
        """Windows no stream holds at the moment (all of them when no stream reads ahead)."""
        with self._lock:
            return self._free

    def _take_window(self) -> bool:
        with self._lock:
            if self._free == 0:
                return False
            self._free -= 1
            return True

    def _give_window(self) -> None:
        with self._lock:
            self._free += 1

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="read-ahead")
            return self._pool

    def buffer(self, size: int) -> memoryview:
        """A view of a buffer of at least `size` bytes that no other view refers to."""
        if size > READ_WINDOW:
            return memoryview(bytearray(size))
        with self._lock:
            for kept in self._buffers:
                # A bytearray cannot change size while a view of it exists (a window being filled, a piece
                # of it in a socket's send queue): then appending raises. The kept buffers have a spare
                # byte allocated, so the test neither reallocates nor copies.
                try:
                    kept.append(0)
                except BufferError:
                    continue
                del kept[-1]
                return memoryview(kept)
            fresh = bytearray(READ_WINDOW + 1)
            del fresh[-1]
            if len(self._buffers) < self._windows:
                self._buffers.append(fresh)
            return memoryview(fresh)

    def ordered(self, jobs: Iterator[Callable[[], T]]) -> Ordered[T]:
        """The futures of `jobs`, in order, each submitted up to `depth` ahead of the one handed out: for a
        consumer that awaits them itself (an event loop)."""
        return Ordered(self._executor(), jobs, self._depth)

    def run(self, windows: Iterator[Callable[[], memoryview]]) -> Generator[memoryview, None, None]:
        """The results of `windows`, in order, up to `depth` of them computed ahead."""
        pending: collections.deque[Future[memoryview]] = collections.deque()
        try:
            while True:
                while len(pending) < self._depth and self._take_window():
                    window = next(windows, None)
                    if window is None:
                        self._give_window()
                        break
                    pending.append(self._executor().submit(window))
                # Yielded without a name bound to it here, so that a buffer is free for reuse once its
                # consumer is done with it.
                if pending:
                    try:
                        yield pending.popleft().result()
                    finally:
                        self._give_window()
                else:
                    window = next(windows, None)
                    if window is None:
                        return
                    yield window()
        finally:
            # A stream closed early (the client went away, or a window failed): the windows still queued
            # are dropped, and each gives its place back once its thread is done with it.
            for future in pending:
                future.cancel()
                future.add_done_callback(lambda _: self._give_window())


class Ordered(Generic[T]):
    """Futures of jobs run by an executor, handed out in order, `depth` ahead (`ReadAhead.ordered`)."""

    def __init__(self, executor: ThreadPoolExecutor, jobs: Iterator[Callable[[], T]], depth: int) -> None:
        self._executor = executor
        self._jobs = jobs
        self._depth = depth
        self._pending: collections.deque[Future[T]] = collections.deque()

    def __iter__(self) -> Ordered[T]:
        return self

    def __next__(self) -> Future[T]:
        while len(self._pending) <= self._depth:
            job = next(self._jobs, None)
            if job is None:
                break
            self._pending.append(self._executor.submit(job))
        if not self._pending:
            raise StopIteration
        return self._pending.popleft()

    def close(self, discard: Callable[[Future[T]], None]) -> None:
        """Cancel the jobs not started yet; hand every other one not handed out (done, or still running)
        to `discard`."""
        for future in self._pending:
            if not future.cancel():
                discard(future)
        self._pending.clear()


def _read_window(
    stored: XorbInfo,
    chunks: Sequence[XorbChunk],
    raw: int,
    read: XorbReader,
    rehash: bool,
    buffer: Callable[[int], memoryview],
) -> memoryview:
    """Chunks of one xorb, read with one scatter read, checked, decompressed where needed, as one buffer
    (of at least `raw` bytes, from `buffer`).

    Uncompressed payloads (the common case for weights) land directly in the output; only the 8-byte headers
    and compressed payloads go elsewhere.
    """
    name = hash_to_string(stored.hash)
    out = buffer(raw)[:raw]
    headers = memoryview(bytearray(CHUNK_HEADER_LEN * len(chunks)))
    buffers: list[memoryview] = []
    compressed: list[tuple[XorbChunk, memoryview, memoryview]] = []
    expected_headers: list[bytes] = []
    position = 0
    for index, chunk in enumerate(chunks):
        payload_len = chunk.end - chunk.start - CHUNK_HEADER_LEN
        target = out[position : position + chunk.length]
        expected_headers.append(chunk_header(chunk.scheme, payload_len, chunk.length))
        buffers.append(headers[index * CHUNK_HEADER_LEN : (index + 1) * CHUNK_HEADER_LEN])
        if chunk.scheme is CompressionScheme.NONE:
            if payload_len != chunk.length:
                raise CorruptXorb(f"stored xorb {name}: an uncompressed chunk has two lengths in its table")
            buffers.append(target)
        else:
            payload = memoryview(bytearray(payload_len))
            compressed.append((chunk, payload, target))
            buffers.append(payload)
        position += chunk.length
    wanted = chunks[-1].end - chunks[0].start
    if read(stored.hash, chunks[0].start, buffers) != wanted:
        raise CorruptXorb(f"stored xorb {name} is shorter than its chunk table")
    if headers != b"".join(expected_headers):
        raise CorruptXorb(f"stored xorb {name} has chunk headers that do not match its chunk table")
    for chunk, payload, target in compressed:
        try:
            target[:] = decode_chunk_payload(chunk.scheme, bytes(payload), chunk.length)
        except XetError as exc:
            raise CorruptXorb(f"stored xorb {name}: {exc.message}") from None
    if not rehash:
        return out
    position = 0
    for chunk in chunks:
        if chunk_hash(out[position : position + chunk.length]) != chunk.hash:
            raise CorruptXorb(f"stored xorb {name} does not match its chunk table")
        position += chunk.length
    return out

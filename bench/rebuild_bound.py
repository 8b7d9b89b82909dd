"""The bound of a plain-HTTP first download of a Xet-uploaded file: the least a server that re-hashes every
chunk must do to send the file, and nothing else.

The hub rebuilds such a file from its stored xorbs and, so as never to send damaged bytes, compares every
chunk header with its chunk table and re-hashes every chunk (keyed BLAKE3) before sending it
(`weightyard.xet.reconstruction.iter_file_bytes`). This server does exactly that work for one file of a
hub's data folder, in the cheapest way this machine allows, and answers `GET /` with the file's bytes
(status 200, `Content-Length`): the file's chunk table is read once at start from the hub's database
(read-only; the hub may be running), each xorb file is mapped once, a second thread checks the next windows
(`AHEAD` windows of up to the hub's `READ_WINDOW` bytes each) straight from the mapping while the serving
thread sends the current one, and an uncompressed payload (the common case for weights) goes from the page
cache to the socket with `os.sendfile`, never copied through Python; a compressed one is decoded and sent. A
chunk that fails its check ends the response there (the connection is closed short of `Content-Length`) and
is logged on stderr: never a wrong byte. The bytes checked are the pages `sendfile` sends: xorb files are
never written in place.

No server that checks every chunk can send the file with less work on this machine (it has no request
routing, no database, no event loop, no copy into a buffer), so `curl` against it is a bound: hub time /
bound time says how close the hub is, anchor time / bound time is the best ratio a re-hashing server reached
here. With `--no-verify` the re-hash is skipped (headers are still compared): what the check alone costs.

bench/transfer.py starts it beside the hub, after the first download, for the row "curl -o /dev/null,
Xet-uploaded, first download". By hand, against a hub's data folder:

    python bench/rebuild_bound.py --data HUB_DATA --sha256 SHA256 [--port 0] [--no-verify]

prints `listening on http://127.0.0.1:PORT` and serves one connection at a time until killed; any request
other than `GET /` is answered 404.
"""

from __future__ import annotations

import argparse
import collections
import mmap
import os
import socket
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from weightyard.repos.content import ContentStore
from weightyard.storage import LocalObjectStore
from weightyard.xet.errors import XetError
from weightyard.xet.hashes import chunk_hash, hash_to_string
from weightyard.xet.reconstruction import READ_WINDOW, plan_reconstruction
from weightyard.xet.xorb import (
    CHUNK_HEADER_LEN,
    CompressionScheme,
    XorbChunk,
    chunk_header,
    decode_chunk_payload,
)

AHEAD = 2  # windows checked ahead of the sender, as the hub's read-ahead (depth 2)
_MAX_REQUEST_HEAD = 64 * 1024

Piece = tuple[int, int] | bytes
"""What to send next: `(offset, count)` of the window's xorb file, or decoded bytes."""


class Damaged(Exception):
    """A stored chunk that does not match the hub's chunk table."""


@dataclass(frozen=True)
class Window:
    """Consecutive chunks of one xorb, up to `READ_WINDOW` bytes of the file."""

    xorb: str
    chunks: tuple[XorbChunk, ...]


@dataclass(frozen=True)
class Checked:
    """A window whose every chunk passed: the xorb file to send from and what to send, in order."""

    fd: int
    pieces: list[Piece]


class Xorbs:
    """The hub's xorb files (`DATA/xorbs/ab/<hash>`, the local object store's layout), each opened and mapped
    once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._open: dict[str, tuple[int, memoryview]] = {}

    def get(self, name: str) -> tuple[int, memoryview]:
        found = self._open.get(name)
        if found is None:
            fd = os.open(self.root / name[:2] / name, os.O_RDONLY)
            found = self._open[name] = fd, memoryview(mmap.mmap(fd, 0, prot=mmap.PROT_READ))
        return found


def load_windows(data: Path, sha256: str) -> tuple[int, list[Window]]:
    """The file's size and its windows, from the chunk tables in the hub's database (opened read-only)."""
    engine = sa.create_engine(f"sqlite:///file:{(data / 'weightyard.db').resolve()}?mode=ro&uri=true")
    try:
        store = ContentStore(LocalObjectStore(data / "blobs", data / "xorbs"), engine, xet=True)
        file = store.file_by_sha256(sha256)
        if file is None:
            raise SystemExit(f"no Xet file with sha256 {sha256} in {data}")
        plan = plan_reconstruction(file.terms, store.xorb_info)
    finally:
        engine.dispose()
    windows: list[Window] = []
    for term in plan.terms:
        chunks = plan.tables[term.xorb_hash].chunks[term.chunk_start : term.chunk_end]
        first, raw = 0, 0
        for index, chunk in enumerate(chunks):
            if raw + chunk.length > READ_WINDOW and index > first:
                windows.append(Window(hash_to_string(term.xorb_hash), chunks[first:index]))
                first, raw = index, 0
            raw += chunk.length
        windows.append(Window(hash_to_string(term.xorb_hash), chunks[first:]))
    return file.size, windows


def check(xorbs: Xorbs, window: Window, verify: bool) -> Checked:
    """Compare each chunk's header with the table and (with `verify`) re-hash it, as the hub does; raises
    `Damaged` at the first chunk that fails."""
    fd, view = xorbs.get(window.xorb)
    pieces: list[Piece] = []
    for chunk in window.chunks:
        where = f"chunk at offset {chunk.start} of xorb {window.xorb}"
        payload_len = chunk.end - chunk.start - CHUNK_HEADER_LEN
        if chunk.end > len(view):
            raise Damaged(f"{where}: the xorb file is shorter than its chunk table")
        if view[chunk.start : chunk.start + CHUNK_HEADER_LEN] != chunk_header(
            chunk.scheme, payload_len, chunk.length
        ):
            raise Damaged(f"{where}: its header does not match the chunk table")
        payload = view[chunk.start + CHUNK_HEADER_LEN : chunk.end]
        if chunk.scheme is CompressionScheme.NONE:
            if payload_len != chunk.length:
                raise Damaged(f"{where}: an uncompressed chunk has two lengths in the table")
            data: bytes | memoryview = payload
            pieces.append((chunk.start + CHUNK_HEADER_LEN, payload_len))
        else:
            try:
                data = decode_chunk_payload(chunk.scheme, bytes(payload), chunk.length)
            except XetError as exc:
                raise Damaged(f"{where}: {exc.message}") from None
            pieces.append(data)
        if verify and chunk_hash(data) != chunk.hash:
            raise Damaged(f"{where}: its bytes do not hash to the chunk table's hash")
    return Checked(fd, pieces)


class RebuildBound:
    """The server: `serve_forever` answers one connection at a time."""

    def __init__(self, data: Path, sha256: str, verify: bool = True, port: int = 0) -> None:
        self.size, self.windows = load_windows(data, sha256)
        self.verify = verify
        self.xorbs = Xorbs(data / "xorbs")
        self.checker = ThreadPoolExecutor(1, thread_name_prefix="check")
        self.listener = socket.create_server(("127.0.0.1", port))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def serve_forever(self) -> None:
        while True:
            connection, _ = self.listener.accept()
            with connection:
                try:
                    self.answer(connection)
                except OSError as exc:  # the client went away
                    print(f"rebuild bound: connection ended: {exc}", file=sys.stderr, flush=True)

    def answer(self, connection: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head and len(head) < _MAX_REQUEST_HEAD:
            got = connection.recv(_MAX_REQUEST_HEAD)
            if not got:
                return
            head += got
        if head.split(b"\r\n", 1)[0].split(b" ")[:2] != [b"GET", b"/"]:
            connection.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % self.size
        )
        pending: collections.deque[Future[Checked]] = collections.deque()
        upcoming = iter(self.windows)
        try:
            for window in upcoming:
                pending.append(self.checker.submit(check, self.xorbs, window, self.verify))
                if len(pending) < AHEAD:
                    continue
                self.send(connection, pending.popleft())
            while pending:
                self.send(connection, pending.popleft())
        except Damaged as exc:
            print(f"rebuild bound: response ended early, {exc}", file=sys.stderr, flush=True)
        finally:
            for future in pending:
                future.cancel()

    def send(self, connection: socket.socket, checked: Future[Checked]) -> None:
        window = checked.result()
        out = connection.fileno()
        for piece in window.pieces:
            if isinstance(piece, bytes):
                connection.sendall(piece)
                continue
            offset, count = piece
            while count:
                sent = os.sendfile(out, window.fd, offset, count)
                if sent == 0:
                    raise Damaged("a xorb file ended before its chunk table")
                offset += sent
                count -= sent


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the hub's data folder")
    parser.add_argument("--sha256", required=True, help="the sha256 of a Xet-uploaded file in it")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--no-verify", action="store_true", help="skip the re-hash (headers still checked)")
    args = parser.parse_args()
    server = RebuildBound(args.data, args.sha256, verify=not args.no_verify, port=args.port)
    print(f"listening on {server.url}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.listener.close()


if __name__ == "__main__":
    main()

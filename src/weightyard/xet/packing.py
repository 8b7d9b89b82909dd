"""Packing a plainly uploaded file into xorbs and a shard record, so it deduplicates with Xet uploads.

A file that arrives through a regular or LFS upload is chunked exactly as the client would chunk it; chunks
the server already stores (found through `ChunkIndex`, or earlier in the same file) are referenced where they
are, and only new chunks go into new xorbs. The result is the `ShardFile` record a Xet client would register,
with the same file hash, so both kinds of upload end up in one storage model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from weightyard.xet.chunking import Chunker
from weightyard.xet.hashes import ChunkRef, chunk_hash, file_hash, verification_hash
from weightyard.xet.shard import FileTerm, ShardFile
from weightyard.xet.xorb import CompressionScheme, XorbInfo, XorbWriter


@dataclass(frozen=True, slots=True)
class ChunkLocation:
    """Where a stored chunk lies: chunk `index` of xorb `xorb_hash`."""

    xorb_hash: bytes
    index: int


ChunkIndex = Callable[[bytes], ChunkLocation | None]
"""The server's chunk index: where a chunk with this hash is already stored, if anywhere."""


@dataclass(frozen=True, slots=True)
class PackedXorb:
    """A new xorb to store: its body (as a client would upload it) and its chunk table."""

    body: bytes
    info: XorbInfo


@dataclass(slots=True)
class _Term:
    # A new xorb is named by its sequence number until it is closed and hashed.
    xorb: bytes | int
    start: int
    end: int
    length: int
    hashes: list[bytes] = field(default_factory=list)


class FilePacker:
    """Chunk a stream, dedup its chunks and pack the new ones into xorbs.

    `update` returns the xorbs that filled up, to be stored right away; `finish` returns the last one and the
    file's shard record. Memory holds one open xorb (at most 64 MiB of compressed chunks) and the chunk list.
    """

    def __init__(self, index: ChunkIndex | None = None, scheme: CompressionScheme | None = None) -> None:
        self._index = index
        self._scheme = scheme
        self._chunker = Chunker()
        self._writer = XorbWriter(scheme)
        self._sequence = 0
        self._closed: dict[int, bytes] = {}
        self._seen: dict[bytes, tuple[bytes | int, int]] = {}
        self._terms: list[_Term] = []
        self._refs: list[ChunkRef] = []

    def update(self, data: bytes | bytearray | memoryview) -> list[PackedXorb]:
        """Add bytes of the file; return the xorbs completed on the way."""
        completed: list[PackedXorb] = []
        for chunk in self._chunker.update(data):
            self._add_chunk(chunk, completed)
        return completed

    def finish(self, sha256: bytes) -> tuple[list[PackedXorb], ShardFile]:
        """End the file, given its sha256 digest: the last new xorb(s) and the file's shard record."""
        completed: list[PackedXorb] = []
        for chunk in self._chunker.finish():
            self._add_chunk(chunk, completed)
        if self._writer.chunk_count:
            completed.append(self._close_xorb())
        terms = []
        verification = []
        for term in self._terms:
            xorb = self._resolve(term.xorb)
            assert isinstance(xorb, bytes), "every xorb is closed by now"
            terms.append(FileTerm(xorb, term.length, term.start, term.end))
            verification.append(verification_hash(term.hashes))
        entry = ShardFile(file_hash(self._refs), tuple(terms), tuple(verification), sha256)
        return completed, entry

    def _add_chunk(self, data: bytes, completed: list[PackedXorb]) -> None:
        digest = chunk_hash(data)
        location = self._locate(digest)
        if location is None:
            if not self._writer.fits(len(data)):
                completed.append(self._close_xorb())
            location = (self._sequence, self._writer.chunk_count)
            self._writer.add(data, digest)
            self._seen[digest] = location
        xorb, index = location
        last = self._terms[-1] if self._terms else None
        if last is not None and self._resolve(last.xorb) == xorb and last.end == index:
            last.end += 1
            last.length += len(data)
            last.hashes.append(digest)
        else:
            self._terms.append(_Term(xorb, index, index + 1, len(data), [digest]))
        self._refs.append((digest, len(data)))

    def _locate(self, digest: bytes) -> tuple[bytes | int, int] | None:
        known = self._seen.get(digest)
        if known is not None:
            return self._resolve(known[0]), known[1]
        stored = self._index(digest) if self._index is not None else None
        return None if stored is None else (stored.xorb_hash, stored.index)

    def _resolve(self, xorb: bytes | int) -> bytes | int:
        """A new xorb's hash once it is closed; its sequence number while it is still open."""
        return self._closed.get(xorb, xorb) if isinstance(xorb, int) else xorb

    def _close_xorb(self) -> PackedXorb:
        body, info = self._writer.finish()
        self._closed[self._sequence] = info.hash
        self._sequence += 1
        self._writer = XorbWriter(self._scheme)
        return PackedXorb(body, info)


def pack_file(
    stream: Iterable[bytes | bytearray | memoryview],
    sha256: bytes,
    index: ChunkIndex | None = None,
    scheme: CompressionScheme | None = None,
) -> tuple[list[PackedXorb], ShardFile]:
    """Pack a whole stream at once: the new xorbs and the file's shard record (see `FilePacker`)."""
    packer = FilePacker(index, scheme)
    xorbs: list[PackedXorb] = []
    for piece in stream:
        xorbs += packer.update(piece)
    last, entry = packer.finish(sha256)
    return xorbs + last, entry

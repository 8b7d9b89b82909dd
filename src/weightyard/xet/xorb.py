"""Xorbs: the client's upload unit, a run of compressed chunks addressed by the Merkle root of its chunks.

An uploaded body is chunks only: per chunk an 8-byte header (version, compressed length, scheme, uncompressed
length) and the payload. The parser here is incremental (feed it the body as it arrives), holds at most one
chunk at a time, bounds every decompression by the declared length, and recomputes every hash: nothing the
uploader claims is trusted (docs/xet.md, "Safety").
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import overload

import lz4.frame  # type: ignore[import-untyped]
import numpy as np

from weightyard.xet.errors import (
    ChunkDecompressionError,
    CorruptXorb,
    InvalidXorb,
    XorbHashMismatch,
    XorbTooLarge,
)
from weightyard.xet.hashes import HASH_LEN, chunk_hash, hash_to_string, xorb_hash

CHUNK_HEADER_LEN = 8
CHUNK_FORMAT_VERSION = 0
MAX_CHUNK_LEN = 128 * 1024
# Compression may expand incompressible data slightly; the client then stores it uncompressed, so anything
# far beyond the chunk size is not a real payload.
MAX_COMPRESSED_CHUNK_LEN = 2 * MAX_CHUNK_LEN
# The client closes a xorb at 64 MiB of raw data or 8192 chunks; headers come on top of the 64 MiB.
MAX_XORB_CHUNKS = 8192
MAX_XORB_RAW_LEN = 64 * 1024 * 1024
MAX_XORB_LEN = MAX_XORB_RAW_LEN + CHUNK_HEADER_LEN * MAX_XORB_CHUNKS

_BYTE_GROUPS = 4
_LZ4_OPTIONS = {
    # Independent 64 KiB blocks without checksums: the frame flags (0x60, 0x40) the client writes.
    "block_size": lz4.frame.BLOCKSIZE_MAX64KB,
    "block_linked": False,
    "content_checksum": False,
    "block_checksum": False,
    "store_size": False,
}


class CompressionScheme(IntEnum):
    """How a chunk's payload is stored."""

    NONE = 0
    LZ4 = 1
    BYTE_GROUPING_4_LZ4 = 2


@dataclass(frozen=True, slots=True)
class XorbChunk:
    """One chunk of a parsed xorb: the server's own record, the ground truth for shards and downloads."""

    hash: bytes
    length: int
    """Uncompressed length."""
    raw_offset: int
    """Offset of the chunk's first byte in the xorb's uncompressed data."""
    start: int
    """Offset of the chunk's header in the serialized xorb."""
    end: int
    """Offset just past the chunk's payload in the serialized xorb."""
    scheme: CompressionScheme


@dataclass(frozen=True, slots=True)
class XorbInfo:
    """What parsing a xorb establishes: its hash and chunk table."""

    hash: bytes
    chunks: tuple[XorbChunk, ...]

    @property
    def serialized_len(self) -> int:
        return self.chunks[-1].end

    @property
    def raw_len(self) -> int:
        last = self.chunks[-1]
        return last.raw_offset + last.length


def byte_group(data: bytes) -> bytes:
    """Split data into 4 groups (byte k of every 4-byte word together), as BG4 does before compressing."""
    array = np.frombuffer(data, dtype=np.uint8)
    return b"".join(array[i::_BYTE_GROUPS].tobytes() for i in range(_BYTE_GROUPS))


def byte_ungroup(grouped: bytes) -> bytes:
    """Invert `byte_group`: group `i` holds output bytes i, i+4, i+8, ..."""
    length = len(grouped)
    source = np.frombuffer(grouped, dtype=np.uint8)
    out = np.empty(length, dtype=np.uint8)
    base, extra = divmod(length, _BYTE_GROUPS)
    offset = 0
    for i in range(_BYTE_GROUPS):
        size = base + (1 if i < extra else 0)
        out[i::_BYTE_GROUPS] = source[offset : offset + size]
        offset += size
    return out.tobytes()


def _lz4_decompress(payload: bytes | memoryview, length: int) -> bytes:
    decompressor = lz4.frame.LZ4FrameDecompressor()
    try:
        # One byte more than declared is enough to tell "too long" without inflating a bomb.
        data: bytes = decompressor.decompress(payload, max_length=length + 1)
    except RuntimeError as exc:
        raise ChunkDecompressionError(f"chunk payload is not a valid LZ4 frame: {exc}") from None
    if len(data) != length or not decompressor.eof or decompressor.unused_data:
        raise ChunkDecompressionError(
            f"chunk payload does not decompress to exactly its declared {length} bytes in one LZ4 frame"
        )
    return data


@overload
def decode_chunk_payload(scheme: CompressionScheme, payload: bytes, length: int) -> bytes: ...
@overload
def decode_chunk_payload(
    scheme: CompressionScheme, payload: memoryview, length: int
) -> bytes | memoryview: ...
def decode_chunk_payload(
    scheme: CompressionScheme, payload: bytes | memoryview, length: int
) -> bytes | memoryview:
    """Uncompressed bytes of a chunk payload, checked to be exactly `length` long (an uncompressed payload
    is returned as it was given, a view included: no copy)."""
    if scheme is CompressionScheme.NONE:
        if len(payload) != length:
            raise ChunkDecompressionError(
                f"uncompressed chunk has {len(payload)} payload bytes but declares {length}"
            )
        return payload
    data = _lz4_decompress(payload, length)
    if scheme is CompressionScheme.BYTE_GROUPING_4_LZ4:
        return byte_ungroup(data)
    return data


def encode_chunk_payload(data: bytes, scheme: CompressionScheme) -> bytes:
    """Payload of a chunk stored with `scheme`."""
    if scheme is CompressionScheme.NONE:
        return data
    if scheme is CompressionScheme.BYTE_GROUPING_4_LZ4:
        data = byte_group(data)
    compressed: bytes = lz4.frame.compress(data, **_LZ4_OPTIONS)
    return compressed


def choose_chunk_encoding(data: bytes) -> tuple[CompressionScheme, bytes]:
    """The smallest of LZ4 and BG4+LZ4 for this chunk, or no compression when neither saves a byte."""
    best = (CompressionScheme.NONE, data)
    for scheme in (CompressionScheme.LZ4, CompressionScheme.BYTE_GROUPING_4_LZ4):
        payload = encode_chunk_payload(data, scheme)
        if len(payload) < len(best[1]):
            best = (scheme, payload)
    return best


def chunk_header(scheme: CompressionScheme, payload_len: int, length: int) -> bytes:
    """The 8-byte header in front of a chunk payload."""
    return struct.pack(
        "<B3sB3s",
        CHUNK_FORMAT_VERSION,
        payload_len.to_bytes(3, "little"),
        scheme,
        length.to_bytes(3, "little"),
    )


_SCHEMES = {scheme.value: scheme for scheme in CompressionScheme}
_U64 = struct.Struct("<Q")


def _parse_header(
    raw: bytes | bytearray | memoryview, at: int, offset: int
) -> tuple[int, CompressionScheme, int]:
    """`(payload length, scheme, uncompressed length)` of the chunk header at `raw[at:at + 8]`, checked;
    `offset` is where it lies in the body, for the error. Runs for every chunk: one unpack, a few shifts."""
    (word,) = _U64.unpack_from(raw, at)
    version, payload_len, scheme_byte, length = (
        word & 0xFF,
        (word >> 8) & 0xFFFFFF,
        (word >> 32) & 0xFF,
        word >> 40,
    )
    scheme = _SCHEMES.get(scheme_byte)
    if (
        version != CHUNK_FORMAT_VERSION
        or scheme is None
        or not 0 < length <= MAX_CHUNK_LEN
        or not 0 < payload_len <= MAX_COMPRESSED_CHUNK_LEN
    ):
        raise _header_error(offset, version, scheme_byte, length, payload_len)
    return payload_len, scheme, length


def _header_error(offset: int, version: int, scheme: int, length: int, payload_len: int) -> InvalidXorb:
    """Which check of `_parse_header` the header at `offset` fails, in words."""
    where = f"chunk header at offset {offset}"
    if version != CHUNK_FORMAT_VERSION:
        return InvalidXorb(
            f"{where}: version {version} is not supported (a footer is not allowed in uploads)"
        )
    if scheme not in _SCHEMES:
        return InvalidXorb(f"{where}: unknown compression scheme {scheme}")
    if not 0 < length <= MAX_CHUNK_LEN:
        return InvalidXorb(f"{where}: uncompressed length {length} is outside 1..{MAX_CHUNK_LEN}")
    return InvalidXorb(f"{where}: payload length {payload_len} is outside 1..{MAX_COMPRESSED_CHUNK_LEN}")


class XorbParser:
    """Incremental, validating xorb parser: `feed` the body as it arrives, then `finish`.

    Memory stays at about one chunk whatever the body size (only an incomplete chunk is kept between feeds); a
    body over `max_len` fails as soon as it passes the limit, whatever Content-Length said. `on_chunk`, when
    given, receives each chunk's uncompressed bytes, in order (a view into what was fed, or the decompressed
    bytes: valid during the call only).

    Chunks are read in place from what is fed: only a chunk split between two feeds is copied (to join its
    parts), and an uncompressed chunk is hashed without a copy.
    """

    def __init__(
        self,
        *,
        max_len: int = MAX_XORB_LEN,
        max_chunks: int = MAX_XORB_CHUNKS,
        on_chunk: Callable[[bytes | memoryview], object] | None = None,
    ) -> None:
        self._max_len = max_len
        self._max_chunks = max_chunks
        self._on_chunk = on_chunk
        self._pending = bytearray()
        self._consumed = 0
        self._raw_offset = 0
        self._chunks: list[XorbChunk] = []

    @property
    def chunks(self) -> Sequence[XorbChunk]:
        """The chunks parsed so far, in order."""
        return self._chunks

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add the next bytes of the body; every chunk they complete is decompressed and hashed now."""
        if self._consumed + len(self._pending) + len(data) > self._max_len:
            raise XorbTooLarge(f"xorb body exceeds {self._max_len} bytes")
        with memoryview(data) as raw, raw.cast("B") as source:
            position = self._complete_pending(source)
            while (end := self._take_chunk(source, position)) is not None:
                position = end
            self._pending += source[position:]

    def _complete_pending(self, source: memoryview) -> int:
        """Move into the pending chunk the bytes of `source` it lacks, process it when whole; return how many
        bytes of `source` it took."""
        if not self._pending:
            return 0
        taken = 0
        while True:
            # The header first, then (knowing the payload length) the rest of the chunk, copied as needed.
            if len(self._pending) < CHUNK_HEADER_LEN:
                wanted = CHUNK_HEADER_LEN
            else:
                wanted = CHUNK_HEADER_LEN + _parse_header(self._pending, 0, self._consumed)[0]
            step = source[taken : taken + wanted - len(self._pending)]
            self._pending += step
            taken += len(step)
            if len(self._pending) < wanted:
                return taken
            if wanted > CHUNK_HEADER_LEN:
                with memoryview(self._pending) as whole:
                    self._take_chunk(whole, 0)
                self._pending.clear()
                return taken

    def finish(self, expected_hash: bytes | None = None) -> XorbInfo:
        """Check the body ended on a chunk boundary and, when given, that the xorb hash is `expected_hash`."""
        if self._pending:
            raise InvalidXorb(f"xorb body is truncated inside the chunk starting at offset {self._consumed}")
        if not self._chunks:
            raise InvalidXorb("xorb body holds no chunk")
        info = XorbInfo(xorb_hash((c.hash, c.length) for c in self._chunks), tuple(self._chunks))
        if expected_hash is not None and info.hash != expected_hash:
            raise XorbHashMismatch(
                f"xorb content hashes to {hash_to_string(info.hash)}, "
                f"not to {hash_to_string(expected_hash)} it was uploaded as"
            )
        return info

    def _take_chunk(self, source: memoryview, position: int) -> int | None:
        """Process the chunk starting at `position` of `source` if it is complete; return where it ends."""
        if len(source) - position < CHUNK_HEADER_LEN:
            return None
        if len(self._chunks) >= self._max_chunks:
            raise InvalidXorb(f"xorb holds more than {self._max_chunks} chunks")
        payload_len, scheme, length = _parse_header(source, position, self._consumed)
        end = position + CHUNK_HEADER_LEN + payload_len
        if len(source) < end:
            return None
        try:
            data = decode_chunk_payload(scheme, source[position + CHUNK_HEADER_LEN : end], length)
        except ChunkDecompressionError as exc:
            raise ChunkDecompressionError(f"chunk at offset {self._consumed}: {exc.message}") from None
        start = self._consumed
        self._consumed += end - position
        self._chunks.append(
            XorbChunk(chunk_hash(data), length, self._raw_offset, start, self._consumed, scheme)
        )
        self._raw_offset += length
        if self._on_chunk is not None:
            self._on_chunk(data)
        return end


def parse_xorb(
    body: bytes | Iterable[bytes], expected_hash: bytes | None = None, *, max_len: int = MAX_XORB_LEN
) -> XorbInfo:
    """Validate an uploaded xorb body and return its chunk table.

    >>> info = parse_xorb(serialize_xorb([b"hello"])[0])
    >>> [chunk.length for chunk in info.chunks]
    [5]
    """
    reader = XorbParser(max_len=max_len)
    for piece in [body] if isinstance(body, bytes | bytearray | memoryview) else body:
        reader.feed(piece)
    return reader.finish(expected_hash)


class XorbWriter:
    """Builds a xorb body chunk by chunk, within the client's limits (64 MiB of data, 8192 chunks)."""

    def __init__(self, scheme: CompressionScheme | None = None) -> None:
        self._scheme = scheme
        self._parts: list[bytes] = []
        self._records: list[XorbChunk] = []
        self._offset = 0
        self._raw_len = 0

    @property
    def chunk_count(self) -> int:
        return len(self._records)

    @property
    def raw_len(self) -> int:
        return self._raw_len

    def fits(self, length: int) -> bool:
        """Whether a chunk of `length` bytes can still go in without passing a limit."""
        return len(self._records) < MAX_XORB_CHUNKS and self._raw_len + length <= MAX_XORB_RAW_LEN

    def add(self, data: bytes, known_hash: bytes | None = None) -> XorbChunk:
        """Append a chunk (its hash is computed unless the caller already has it); return its record."""
        if not 0 < len(data) <= MAX_CHUNK_LEN:
            raise InvalidXorb(f"chunk length {len(data)} is outside 1..{MAX_CHUNK_LEN}")
        if not self.fits(len(data)):
            raise InvalidXorb(f"a xorb holds at most {MAX_XORB_CHUNKS} chunks and {MAX_XORB_RAW_LEN} bytes")
        if self._scheme is None:
            scheme, payload = choose_chunk_encoding(data)
        else:
            scheme, payload = self._scheme, encode_chunk_payload(data, self._scheme)
        self._parts += (chunk_header(scheme, len(payload), len(data)), payload)
        end = self._offset + CHUNK_HEADER_LEN + len(payload)
        record = XorbChunk(
            chunk_hash(data) if known_hash is None else known_hash,
            len(data),
            self._raw_len,
            self._offset,
            end,
            scheme,
        )
        self._records.append(record)
        self._offset, self._raw_len = end, self._raw_len + len(data)
        return record

    def finish(self) -> tuple[bytes, XorbInfo]:
        """The serialized body (no footer, as uploaded) and the chunk table of the xorb."""
        if not self._records:
            raise InvalidXorb("a xorb needs at least one chunk")
        info = XorbInfo(xorb_hash((r.hash, r.length) for r in self._records), tuple(self._records))
        return b"".join(self._parts), info


def serialize_xorb(
    chunks: Iterable[bytes], scheme: CompressionScheme | None = None
) -> tuple[bytes, XorbInfo]:
    """Build a xorb body (no footer, as the client uploads it) from uncompressed chunks.

    `scheme=None` picks the smallest encoding per chunk, as the client does; a given scheme is used for all.
    """
    writer = XorbWriter(scheme)
    for data in chunks:
        writer.add(data)
    return writer.finish()


def iter_chunk_data(serialized: bytes | memoryview, first_offset: int = 0) -> Iterator[bytes]:
    """Decode consecutive serialized chunks (a fetched byte range of a stored xorb) into their data."""
    view = memoryview(serialized)
    position = 0
    while position < len(view):
        if len(view) - position < CHUNK_HEADER_LEN:
            raise InvalidXorb(f"chunk header at offset {first_offset + position} is truncated")
        payload_len, scheme, length = _parse_header(view, position, first_offset + position)
        payload_start = position + CHUNK_HEADER_LEN
        payload_end = payload_start + payload_len
        if payload_end > len(view):
            raise InvalidXorb(f"chunk at offset {first_offset + position} is truncated")
        yield decode_chunk_payload(scheme, bytes(view[payload_start:payload_end]), length)
        position = payload_end


# A compact chunk table for the server's index, 41 bytes a chunk: hash, length, serialized end and scheme;
# the offsets follow from running sums.
_TABLE_ENTRY = struct.Struct("<32sIIB")


def pack_chunk_table(info: XorbInfo) -> bytes:
    """The chunk table of a xorb as one blob, for a database column; `unpack_chunk_table` reads it back."""
    return b"".join(_TABLE_ENTRY.pack(c.hash, c.length, c.end, c.scheme) for c in info.chunks)


def unpack_chunk_table(xorb: bytes, blob: bytes) -> XorbInfo:
    """Rebuild the `XorbInfo` of xorb `xorb` from `pack_chunk_table` output; a bad blob is `CorruptXorb`."""
    if not blob or len(blob) % _TABLE_ENTRY.size:
        raise CorruptXorb(f"a chunk table of {len(blob)} bytes is not a whole number of entries")
    chunks: list[XorbChunk] = []
    start = raw_offset = 0
    for hash_value, length, end, scheme in _TABLE_ENTRY.iter_unpack(blob):
        valid = 0 < length <= MAX_CHUNK_LEN and end > start + CHUNK_HEADER_LEN and scheme in _SCHEMES
        if not valid:
            raise CorruptXorb(f"chunk table entry {len(chunks)} of xorb {hash_to_string(xorb)} is invalid")
        chunks.append(XorbChunk(hash_value, length, raw_offset, start, end, _SCHEMES[scheme]))
        start, raw_offset = end, raw_offset + length
    return XorbInfo(xorb, tuple(chunks))


# The footer a server appends to a stored xorb ("XorbObjectInfo" v1), so that the object alone says where
# each chunk lies. Clients never send it and fetch ranges never include it.
_FOOTER_IDENT = b"XETBLOB"
_FOOTER_VERSION = 1
_HASHES_IDENT = b"XBLBHSH"
_HASHES_VERSION = 0
_BOUNDARIES_IDENT = b"XBLBBND"
_BOUNDARIES_VERSION = 1
_FOOTER_PADDING = 16
_SECTION_HEAD = len(_FOOTER_IDENT) + 1 + 4


def build_xorb_footer(info: XorbInfo) -> bytes:
    """The footer to append after the chunks of a stored xorb, followed by its own length as a u32."""
    n = len(info.chunks)
    boundaries_from_end = _SECTION_HEAD + 8 * n + 12 + _FOOTER_PADDING
    hashes_from_end = _SECTION_HEAD + HASH_LEN * n + boundaries_from_end
    body = b"".join(
        [
            _FOOTER_IDENT,
            bytes([_FOOTER_VERSION]),
            info.hash,
            _HASHES_IDENT,
            bytes([_HASHES_VERSION]),
            struct.pack("<I", n),
            *(chunk.hash for chunk in info.chunks),
            _BOUNDARIES_IDENT,
            bytes([_BOUNDARIES_VERSION]),
            struct.pack("<I", n),
            struct.pack(f"<{n}I", *(chunk.end for chunk in info.chunks)),
            struct.pack(f"<{n}I", *(chunk.raw_offset + chunk.length for chunk in info.chunks)),
            struct.pack("<III", n, hashes_from_end, boundaries_from_end),
            bytes(_FOOTER_PADDING),
        ]
    )
    return body + struct.pack("<I", len(body))


def parse_xorb_footer(stored: bytes) -> XorbInfo:
    """Read the chunk table of a stored xorb (chunks followed by `build_xorb_footer`) from its footer alone.

    The hashes are taken from the footer, which the server wrote itself after validating the upload.
    """
    if len(stored) < 4:
        raise InvalidXorb("stored xorb is too short to hold a footer")
    (footer_len,) = struct.unpack_from("<I", stored, len(stored) - 4)
    footer_start = len(stored) - 4 - footer_len
    if footer_start < 0:
        raise InvalidXorb("stored xorb footer length points before the start of the object")
    footer = memoryview(stored)[footer_start : len(stored) - 4]
    position = 0

    def take(size: int) -> bytes:
        nonlocal position
        if position + size > len(footer):
            raise InvalidXorb("stored xorb footer is truncated")
        value = bytes(footer[position : position + size])
        position += size
        return value

    def section(ident: bytes, version: int) -> None:
        if take(len(ident)) != ident or take(1)[0] != version:
            raise InvalidXorb(f"stored xorb footer lacks its {ident.decode()} v{version} section")

    section(_FOOTER_IDENT, _FOOTER_VERSION)
    hash_ = take(HASH_LEN)
    section(_HASHES_IDENT, _HASHES_VERSION)
    (n,) = struct.unpack("<I", take(4))
    hashes = [take(HASH_LEN) for _ in range(n)]
    section(_BOUNDARIES_IDENT, _BOUNDARIES_VERSION)
    if struct.unpack("<I", take(4)) != (n,):
        raise InvalidXorb("stored xorb footer sections disagree on the chunk count")
    ends = struct.unpack(f"<{n}I", take(4 * n))
    raw_ends = struct.unpack(f"<{n}I", take(4 * n))
    take(12 + _FOOTER_PADDING)
    if position != len(footer) or n == 0 or ends[-1] != footer_start:
        raise InvalidXorb("stored xorb footer does not describe the chunks before it")
    chunks = []
    start = raw_start = 0
    for hash_value, end, raw_end in zip(hashes, ends, raw_ends, strict=True):
        if len(stored) - start < CHUNK_HEADER_LEN:
            raise InvalidXorb(f"chunk header at offset {start} is truncated")
        payload_len, scheme, length = _parse_header(stored, start, start)
        if end - start != CHUNK_HEADER_LEN + payload_len or raw_end - raw_start != length:
            raise InvalidXorb(f"stored xorb footer disagrees with the chunk header at offset {start}")
        chunks.append(XorbChunk(hash_value, length, raw_start, start, end, scheme))
        start, raw_start = end, raw_end
    return XorbInfo(hash_, tuple(chunks))

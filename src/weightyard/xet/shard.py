"""Shards ("MDB shards"): how the client registers files (as terms over xorb chunk ranges) and xorbs.

A shard is a header, a file-info section and a xorb-info section, each closed by a bookend record; all records
are 48 bytes. Uploaded shards stop there. Shards the server hands out as dedup answers carry lookup tables and
a 200-byte footer as well, because the client opens them as files in its shard cache.

Parsing only checks the format. `verify_shard` then checks every claim against the server's own chunk tables
(docs/xet.md, "Safety"): a shard can name only xorbs the server holds, with their true chunk hashes and sizes,
and verification hashes that prove the uploader knew the chunk hashes of every range it references.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from weightyard.xet.errors import InvalidShard, ShardTooLarge, ShardVerificationError, UnknownXorb
from weightyard.xet.hashes import (
    EMPTY_FILE_HASH,
    HASH_LEN,
    file_hash,
    hash_sort_key,
    hash_to_string,
    is_global_dedup_eligible,
    keyed_chunk_hash,
    sha256_to_shard_bytes,
    shard_bytes_to_sha256,
    truncated_hash,
    verification_hash,
)
from weightyard.xet.xorb import XorbInfo

SHARD_TAG = b"HFRepoMetaData\x00" + bytes([85, 105, 103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205])
SHARD_TAG += bytes([209, 74, 169])
SHARD_VERSION = 2
FOOTER_VERSION = 1
FOOTER_LEN = 200
RECORD_LEN = 48
MAX_SHARD_LEN = 64 * 1024 * 1024
FLAG_VERIFICATION = 1 << 31
FLAG_METADATA_EXT = 1 << 30
NO_EXPIRY = (1 << 64) - 1
EMPTY_SHA256 = hashlib.sha256(b"").digest()
# About 1 TiB of file content at the client's 64 KiB mean chunk; at worst about a minute of Merkle hashing.
MAX_CHUNK_REFS = 1 << 24

_HEADER = struct.Struct("<32sQQ")
_FILE_HEADER = struct.Struct("<32sII8x")
_FILE_TERM = struct.Struct("<32sIIII")
_HASH_RECORD = struct.Struct("<32s16x")
_XORB_HEADER = struct.Struct("<32sIIII")
_XORB_CHUNK = struct.Struct("<32sIII4x")
# version, 8 section offsets and counts, HMAC key, creation, expiry, 6 reserved u64, 3 totals, footer offset
_FOOTER = struct.Struct("<9Q32sQQ48x4Q")
_FILE_LOOKUP = struct.Struct("<QI")
_CHUNK_LOOKUP = struct.Struct("<QII")
_BOOKEND = b"\xff" * HASH_LEN + bytes(RECORD_LEN - HASH_LEN)
_BOOKEND_HASH = b"\xff" * HASH_LEN


@dataclass(frozen=True, slots=True)
class FileTerm:
    """A piece of a file: chunks `[chunk_start, chunk_end)` of one xorb."""

    xorb_hash: bytes
    unpacked_len: int
    chunk_start: int
    chunk_end: int


@dataclass(frozen=True, slots=True)
class ShardFile:
    """A file registered by a shard: its Xet hash, its terms and the per-term verification hashes."""

    file_hash: bytes
    terms: tuple[FileTerm, ...]
    verification: tuple[bytes, ...] | None
    sha256: bytes | None
    """The raw sha256 digest of the file's content, as the uploader claims it."""

    @property
    def size(self) -> int:
        return sum(term.unpacked_len for term in self.terms)


@dataclass(frozen=True, slots=True)
class ShardChunk:
    """A chunk as a shard's xorb-info section lists it."""

    hash: bytes
    raw_offset: int
    length: int
    flags: int = 0


@dataclass(frozen=True, slots=True)
class ShardXorb:
    """A xorb as a shard's xorb-info section describes it."""

    hash: bytes
    chunks: tuple[ShardChunk, ...]
    raw_len: int
    bytes_on_disk: int = 0


@dataclass(frozen=True, slots=True)
class ShardFooter:
    """The footer fields that carry meaning; offsets and totals are derived when serializing."""

    hmac_key: bytes = bytes(HASH_LEN)
    """All zero when chunk hashes are not protected; otherwise they are `keyed_chunk_hash(hash, hmac_key)`."""
    created: int = 0
    expiry: int = NO_EXPIRY


@dataclass(frozen=True, slots=True)
class Shard:
    """A parsed (or to-be-serialized) shard; `footer` is None for the upload form."""

    files: tuple[ShardFile, ...]
    xorbs: tuple[ShardXorb, ...]
    footer: ShardFooter | None = None


class _Cursor:
    def __init__(self, data: bytes, end: int) -> None:
        self.data = data
        self.position = 0
        self.end = end

    def unpack(self, layout: struct.Struct, what: str) -> tuple[object, ...]:
        if self.position + layout.size > self.end:
            raise InvalidShard(f"shard is truncated in {what} at offset {self.position}")
        values = layout.unpack_from(self.data, self.position)
        self.position += layout.size
        return values

    def records_fit(self, count: int, what: str) -> None:
        if self.position + count * RECORD_LEN > self.end:
            raise InvalidShard(f"shard declares {count} {what} records past its end (offset {self.position})")

    def at_bookend(self) -> bool:
        if self.position + RECORD_LEN > self.end:
            raise InvalidShard(f"shard is truncated before a section's bookend at offset {self.position}")
        if self.data[self.position : self.position + HASH_LEN] != _BOOKEND_HASH:
            return False
        if self.data[self.position : self.position + RECORD_LEN] != _BOOKEND:
            raise InvalidShard(f"malformed bookend record at offset {self.position}")
        self.position += RECORD_LEN
        return True


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _bytes(value: object) -> bytes:
    assert isinstance(value, bytes)
    return value


def _parse_file(cursor: _Cursor) -> ShardFile:
    start = cursor.position
    raw_hash, flags, count = cursor.unpack(_FILE_HEADER, "a file header")
    flags, count = _int(flags), _int(count)
    if flags & ~(FLAG_VERIFICATION | FLAG_METADATA_EXT):
        raise InvalidShard(f"file record at offset {start} has unknown flags {flags:#010x}")
    with_verification = bool(flags & FLAG_VERIFICATION)
    with_metadata = bool(flags & FLAG_METADATA_EXT)
    cursor.records_fit(count * (2 if with_verification else 1) + with_metadata, "file")
    terms = []
    for _ in range(count):
        xorb, _xorb_flags, unpacked, chunk_start, chunk_end = cursor.unpack(_FILE_TERM, "a file term")
        terms.append(FileTerm(_bytes(xorb), _int(unpacked), _int(chunk_start), _int(chunk_end)))
    verification = None
    if with_verification:
        verification = tuple(_bytes(cursor.unpack(_HASH_RECORD, "a verification entry")[0]) for _ in terms)
    sha256 = None
    if with_metadata:
        sha256 = shard_bytes_to_sha256(_bytes(cursor.unpack(_HASH_RECORD, "a metadata extension")[0]))
    return ShardFile(_bytes(raw_hash), tuple(terms), verification, sha256)


def _parse_xorb(cursor: _Cursor) -> ShardXorb:
    raw_hash, _flags, count, raw_len, on_disk = cursor.unpack(_XORB_HEADER, "a xorb header")
    count = _int(count)
    cursor.records_fit(count, "xorb chunk")
    chunks = []
    for _ in range(count):
        chunk, raw_offset, length, chunk_flags = cursor.unpack(_XORB_CHUNK, "a xorb chunk")
        chunks.append(ShardChunk(_bytes(chunk), _int(raw_offset), _int(length), _int(chunk_flags)))
    return ShardXorb(_bytes(raw_hash), tuple(chunks), _int(raw_len), _int(on_disk))


def parse_shard(data: bytes, *, max_len: int = MAX_SHARD_LEN) -> Shard:
    """Parse a shard (as uploaded, or with lookup tables and footer) and check its structure.

    >>> parse_shard(serialize_shard(Shard(files=(), xorbs=()))).files
    ()
    """
    if len(data) > max_len:
        raise ShardTooLarge(f"shard is {len(data)} bytes, more than {max_len}")
    if len(data) < _HEADER.size:
        raise InvalidShard("shard is shorter than its header")
    tag, version, footer_len = _HEADER.unpack_from(data, 0)
    if tag != SHARD_TAG:
        raise InvalidShard("shard does not start with the MDB shard tag")
    if version != SHARD_VERSION:
        raise InvalidShard(f"shard header version {version} is not {SHARD_VERSION}")
    if footer_len not in (0, FOOTER_LEN):
        raise InvalidShard(f"shard footer size {footer_len} is neither 0 nor {FOOTER_LEN}")
    end = len(data) - footer_len
    if end < _HEADER.size:
        raise InvalidShard("shard is shorter than its header and footer")
    cursor = _Cursor(data, end)
    cursor.position = _HEADER.size
    files = []
    while not cursor.at_bookend():
        files.append(_parse_file(cursor))
    xorbs = []
    while not cursor.at_bookend():
        xorbs.append(_parse_xorb(cursor))
    shard_footer = None
    if footer_len:
        shard_footer = _read_footer(data, end)
    shard = Shard(tuple(files), tuple(xorbs), shard_footer)
    if footer_len:
        # The lookup tables and totals are derived data: the shard is consistent when they are what we would
        # write for the same content.
        expected = serialize_shard(shard)
        if expected != data:
            raise InvalidShard("shard lookup tables or footer do not match its file and xorb sections")
    elif cursor.position != len(data):
        raise InvalidShard(f"shard has {len(data) - cursor.position} trailing bytes after its xorb section")
    return shard


def _read_footer(data: bytes, offset: int) -> ShardFooter:
    values = _FOOTER.unpack_from(data, offset)
    if values[0] != FOOTER_VERSION:
        raise InvalidShard(f"shard footer version {values[0]} is not {FOOTER_VERSION}")
    return ShardFooter(hmac_key=values[9], created=values[10], expiry=values[11])


def _file_records(entry: ShardFile) -> list[bytes]:
    flags = (FLAG_VERIFICATION if entry.verification is not None else 0) | (
        FLAG_METADATA_EXT if entry.sha256 is not None else 0
    )
    records = [_FILE_HEADER.pack(entry.file_hash, flags, len(entry.terms))]
    records += [
        _FILE_TERM.pack(t.xorb_hash, 0, t.unpacked_len, t.chunk_start, t.chunk_end) for t in entry.terms
    ]
    if entry.verification is not None:
        if len(entry.verification) != len(entry.terms):
            raise InvalidShard("a file needs exactly one verification hash per term")
        records += [_HASH_RECORD.pack(h) for h in entry.verification]
    if entry.sha256 is not None:
        records.append(_HASH_RECORD.pack(sha256_to_shard_bytes(entry.sha256)))
    return records


def serialize_shard(shard: Shard) -> bytes:
    """Serialize a shard; with `shard.footer` set, add the lookup tables and footer a client cache needs."""
    parts = [_HEADER.pack(SHARD_TAG, SHARD_VERSION, FOOTER_LEN if shard.footer else 0)]
    file_lookup: list[tuple[int, int]] = []
    index = 0
    for entry in shard.files:
        records = _file_records(entry)
        file_lookup.append((truncated_hash(entry.file_hash), index))
        parts += records
        index += len(records)
    parts.append(_BOOKEND)
    xorb_info_offset = _HEADER.size + (index + 1) * RECORD_LEN
    xorb_lookup: list[tuple[int, int]] = []
    chunk_lookup: list[tuple[int, int, int]] = []
    index = 0
    for xorb in shard.xorbs:
        parts.append(_XORB_HEADER.pack(xorb.hash, 0, len(xorb.chunks), xorb.raw_len, xorb.bytes_on_disk))
        parts += [_XORB_CHUNK.pack(c.hash, c.raw_offset, c.length, c.flags) for c in xorb.chunks]
        xorb_lookup.append((truncated_hash(xorb.hash), index))
        chunk_lookup += [(truncated_hash(c.hash), index, i) for i, c in enumerate(xorb.chunks)]
        index += 1 + len(xorb.chunks)
    parts.append(_BOOKEND)
    if shard.footer is None:
        return b"".join(parts)
    file_lookup_offset = xorb_info_offset + (index + 1) * RECORD_LEN
    xorb_lookup_offset = file_lookup_offset + _FILE_LOOKUP.size * len(file_lookup)
    chunk_lookup_offset = xorb_lookup_offset + _FILE_LOOKUP.size * len(xorb_lookup)
    footer_offset = chunk_lookup_offset + _CHUNK_LOOKUP.size * len(chunk_lookup)
    # The client binary-searches these tables on the key alone; ties keep section order.
    parts += [_FILE_LOOKUP.pack(*e) for e in sorted(file_lookup, key=lambda e: e[0])]
    parts += [_FILE_LOOKUP.pack(*e) for e in sorted(xorb_lookup, key=lambda e: e[0])]
    parts += [_CHUNK_LOOKUP.pack(*e) for e in sorted(chunk_lookup, key=lambda e: e[0])]
    footer = shard.footer
    parts.append(
        _FOOTER.pack(
            FOOTER_VERSION,
            _HEADER.size,
            xorb_info_offset,
            file_lookup_offset,
            len(file_lookup),
            xorb_lookup_offset,
            len(xorb_lookup),
            chunk_lookup_offset,
            len(chunk_lookup),
            footer.hmac_key,
            footer.created,
            footer.expiry,
            sum(x.bytes_on_disk for x in shard.xorbs),
            sum(f.size for f in shard.files),
            sum(x.raw_len for x in shard.xorbs),
            footer_offset,
        )
    )
    return b"".join(parts)


XorbLookup = Callable[[bytes], XorbInfo | None]
"""The server's record of a stored xorb by hash (its own parse at upload), or None when it has none."""


def stored_xorb(lookup: XorbLookup, xorb_hash: bytes, context: str) -> XorbInfo:
    """The server's record of a xorb, or `UnknownXorb` naming what referred to it."""
    info = lookup(xorb_hash)
    if info is None:
        raise UnknownXorb(
            f"{context} refers to xorb {hash_to_string(xorb_hash)}, which this server does not hold"
        )
    return info


def _verify_xorb_block(block: ShardXorb, lookup: XorbLookup) -> None:
    name = hash_to_string(block.hash)
    stored = stored_xorb(lookup, block.hash, "the xorb section")
    if len(block.chunks) != len(stored.chunks):
        raise ShardVerificationError(
            f"xorb {name} has {len(stored.chunks)} chunks, the shard lists {len(block.chunks)}"
        )
    if block.raw_len != stored.raw_len:
        raise ShardVerificationError(
            f"xorb {name} holds {stored.raw_len} bytes, the shard says {block.raw_len}"
        )
    for index, (claimed, actual) in enumerate(zip(block.chunks, stored.chunks, strict=True)):
        if (claimed.hash, claimed.length, claimed.raw_offset) != (
            actual.hash,
            actual.length,
            actual.raw_offset,
        ):
            raise ShardVerificationError(f"chunk {index} of xorb {name} is not what the shard says it is")


@dataclass(frozen=True, slots=True)
class ShardWork:
    """What verifying a shard's files would cost, known from its sizes alone."""

    chunk_refs: int
    """Chunk references in all file terms: each is hashed into the file's Merkle tree."""
    file_bytes: dict[bytes, int]
    """Bytes of content each file names, by file hash: what rebuilding it to check its sha256 reads."""
    file_spans: dict[bytes, list[tuple[bytes, int, int]]]
    """Each file's content as raw byte spans `(xorb, start, end)` of stored xorbs, in term order."""

    def distinct_bytes(self, files: Iterable[bytes]) -> int:
        """Bytes of distinct stored content the given files name together: the union of their spans.

        What rebuilding them reads beyond this is repetition (one chunk named over and over), which costs
        hashing without standing for any content the uploader could hold."""
        spans: dict[bytes, list[tuple[int, int]]] = {}
        for file in files:
            for xorb, start, end in self.file_spans.get(file, ()):
                spans.setdefault(xorb, []).append((start, end))
        total = 0
        for ranges in spans.values():
            ranges.sort()
            reach = -1
            for start, end in ranges:
                if end <= reach:
                    continue
                total += end - max(start, reach)
                reach = end
        return total


def check_shard_sizes(shard: Shard, lookup: XorbLookup) -> ShardWork:
    """The cheap checks, before any hashing: each file carries its verification entries and sha256, every
    xorb a term names is held, each term's chunk range lies inside that xorb's chunk table and its unpacked
    length is what the table says. Returns what the rest of the verification would cost."""
    boundaries: dict[bytes, list[int]] = {}  # per xorb, the raw offset where each chunk ends
    refs = 0
    file_bytes: dict[bytes, int] = {}
    file_spans: dict[bytes, list[tuple[bytes, int, int]]] = {}
    for entry in shard.files:
        name = hash_to_string(entry.file_hash)
        if entry.verification is None or entry.sha256 is None:
            raise ShardVerificationError(f"file {name} lacks its verification entries or its sha256")
        for index, term in enumerate(entry.terms):
            where = f"term {index} of file {name}"
            ends = boundaries.get(term.xorb_hash)
            if ends is None:
                stored = stored_xorb(lookup, term.xorb_hash, where)
                ends = list(itertools.accumulate((c.length for c in stored.chunks), initial=0))
                boundaries[term.xorb_hash] = ends
            if not 0 <= term.chunk_start < term.chunk_end < len(ends):
                raise ShardVerificationError(
                    f"{where}: chunk range [{term.chunk_start}, {term.chunk_end}) is outside the xorb's "
                    f"{len(ends) - 1} chunks"
                )
            if term.unpacked_len != ends[term.chunk_end] - ends[term.chunk_start]:
                raise ShardVerificationError(f"{where}: unpacked length does not match the stored chunks")
            refs += term.chunk_end - term.chunk_start
            spans = file_spans.setdefault(entry.file_hash, [])
            spans.append((term.xorb_hash, ends[term.chunk_start], ends[term.chunk_end]))
        file_bytes[entry.file_hash] = entry.size
    return ShardWork(refs, file_bytes, file_spans)


def _verify_file(entry: ShardFile, lookup: XorbLookup) -> None:
    """The hashing half of a file's verification; `check_shard_sizes` has checked its sizes."""
    name = hash_to_string(entry.file_hash)
    assert entry.verification is not None
    assert entry.sha256 is not None
    if not entry.terms:
        # The client registers empty files too: no terms, the zero hash, and a sha256 we can check ourselves.
        if entry.file_hash != EMPTY_FILE_HASH:
            raise ShardVerificationError(f"file {name} has no term")
        if entry.sha256 != EMPTY_SHA256:
            raise ShardVerificationError("the empty file is registered with the sha256 of other content")
        return
    refs = []
    for index, (term, claimed) in enumerate(zip(entry.terms, entry.verification, strict=True)):
        where = f"term {index} of file {name}"
        chunks = stored_xorb(lookup, term.xorb_hash, where).chunks[term.chunk_start : term.chunk_end]
        if claimed != verification_hash(c.hash for c in chunks):
            raise ShardVerificationError(f"{where}: verification hash does not match the stored chunks")
        refs += [(c.hash, c.length) for c in chunks]
    if file_hash(refs) != entry.file_hash:
        raise ShardVerificationError(f"file {name}: its terms hash to a different file hash")


def verify_shard(
    shard: Shard,
    lookup: XorbLookup,
    *,
    max_chunk_refs: int = MAX_CHUNK_REFS,
    afford: Callable[[ShardWork], None] | None = None,
) -> None:
    """Check an uploaded shard against the server's chunk tables; raise on the first claim that is false.

    Verification hashes every chunk range the files name, so its cost follows the chunks referenced, not
    the shard's size: a shard naming more than `max_chunk_refs` chunks in all is refused before any hashing,
    and the sizes are checked against the chunk tables (`check_shard_sizes`) before `afford` is asked
    whether the caller will pay for the rest. The sha256 of each file cannot be checked from hashes: it
    stays the uploader's claim until the file is reconstructed and hashed.
    """
    if shard.footer is not None and shard.footer.hmac_key != bytes(HASH_LEN):
        raise ShardVerificationError("an uploaded shard must not carry protected (keyed) chunk hashes")
    referenced = sum(max(0, t.chunk_end - t.chunk_start) for entry in shard.files for t in entry.terms)
    if referenced > max_chunk_refs:
        raise ShardTooLarge(f"shard references {referenced} chunks, more than {max_chunk_refs}")
    known: dict[bytes, XorbInfo | None] = {}

    def cached(xorb: bytes) -> XorbInfo | None:
        if xorb not in known:
            known[xorb] = lookup(xorb)
        return known[xorb]

    work = check_shard_sizes(shard, cached)
    if afford is not None:
        afford(work)
    for block in shard.xorbs:
        _verify_xorb_block(block, cached)
    for entry in shard.files:
        _verify_file(entry, cached)


def file_entry(terms: Sequence[FileTerm], lookup: XorbLookup, sha256: bytes) -> ShardFile:
    """Build a file's shard record, with hash and verification entries, from its terms over stored xorbs."""
    refs = []
    verification = []
    for term in terms:
        stored = stored_xorb(lookup, term.xorb_hash, "a file term")
        chunks = stored.chunks[term.chunk_start : term.chunk_end]
        verification.append(verification_hash(c.hash for c in chunks))
        refs += [(c.hash, c.length) for c in chunks]
    return ShardFile(file_hash(refs), tuple(terms), tuple(verification), sha256)


def shard_xorb(info: XorbInfo, hmac_key: bytes | None = None) -> ShardXorb:
    """Describe a stored xorb for a shard, its chunk hashes keyed by `hmac_key` when one is given."""
    chunks = tuple(
        ShardChunk(
            c.hash if hmac_key is None else keyed_chunk_hash(c.hash, hmac_key),
            c.raw_offset,
            c.length,
        )
        for c in info.chunks
    )
    return ShardXorb(info.hash, chunks, info.raw_len)


def dedup_shard(xorbs: Iterable[XorbInfo], *, hmac_key: bytes, created: int, expiry: int) -> bytes:
    """The body of a global-dedup answer: these xorbs with keyed chunk hashes, lookup tables and footer."""
    blocks = sorted((shard_xorb(info, hmac_key) for info in xorbs), key=lambda x: hash_sort_key(x.hash))
    return serialize_shard(Shard((), tuple(blocks), ShardFooter(hmac_key, created, expiry)))


def dedup_index_entries(
    files: Iterable[ShardFile], xorbs: Iterable[XorbInfo], lookup: XorbLookup
) -> dict[bytes, bytes]:
    """The `chunk hash -> xorb hash` pairs the global-dedup index needs after an upload.

    That is every eligible chunk of the new xorbs, and the first chunk of every new file: the client always
    queries a file's first chunk, which is rarely eligible by its hash.
    """
    entries = {c.hash: info.hash for info in xorbs for c in info.chunks if is_global_dedup_eligible(c.hash)}
    for entry in files:
        if entry.terms:
            first = entry.terms[0]
            stored = stored_xorb(lookup, first.xorb_hash, "a file term")
            entries.setdefault(stored.chunks[first.chunk_start].hash, first.xorb_hash)
    return entries

"""The hashes of the Xet protocol: chunk hashes, the Merkle tree over them, file, xorb, verification hashes.

Every hash is 32 raw bytes inside the library. Only at the edges (URLs, JSON, headers) does a hash become a
string, in the protocol's own layout: each 8-byte group is read as a little-endian u64 and printed as 16 hex
digits, so plain `bytes.hex()` would name a different object.
"""

from __future__ import annotations

import array
import struct
import sys
from collections.abc import Iterable, Sequence

import blake3

from weightyard.xet.errors import InvalidXetHash

HASH_LEN = 32

DATA_KEY = bytes.fromhex("6697f5775b9550de3135cbaca597181c9de421109beb2b58b4d0b04b93adf229")
INTERNAL_NODE_KEY = bytes.fromhex("017ec5c7a5472996fd946666b48a02e65ddd536f37c76dd2f86352e64a53713f")
VERIFICATION_KEY = bytes.fromhex("7f1857d6ce56ed66127ff913e7a5c3f3a4cd26d5b5db49e64124987f28fb94c3")
# The file hash is keyed by zeros, so that it differs from the xorb hash of the same chunk list.
FILE_KEY = bytes(HASH_LEN)
EMPTY_FILE_HASH = bytes(HASH_LEN)

# A Merkle group closes at the first member (from the third on) whose last u64 is a multiple of this.
_MERGE_MODULUS = 4
_MIN_GROUP = 3
_MAX_GROUP = 9
# Chunks whose last u64 is a multiple of this are indexed for global deduplication.
GLOBAL_DEDUP_MODULUS = 1024

_FOUR_U64 = struct.Struct("<4Q")

ChunkRef = tuple[bytes, int]
"""A chunk as the Merkle tree sees it: its 32-byte hash and its uncompressed length."""


def hash_to_string(raw: bytes) -> str:
    """Return the protocol string form of a 32-byte hash.

    >>> hash_to_string(bytes(range(32)))[:16]
    '0706050403020100'
    """
    if len(raw) != HASH_LEN:
        raise InvalidXetHash(f"a Xet hash is {HASH_LEN} bytes, got {len(raw)}")
    # Reversing all 32 bytes reverses each group and the order of the groups; the slices undo the latter.
    # (About three times faster than unpacking and formatting four integers: it runs for every chunk.)
    reversed_hex = raw[::-1].hex()
    return reversed_hex[48:] + reversed_hex[32:48] + reversed_hex[16:32] + reversed_hex[:16]


def string_to_hash(text: str) -> bytes:
    """Parse the protocol string form of a hash (64 hex digits) into its 32 raw bytes."""
    if len(text) != 2 * HASH_LEN:
        raise InvalidXetHash(f"a Xet hash string is {2 * HASH_LEN} hex digits, got {len(text)} characters")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InvalidXetHash(f"not a hex string: {text!r}") from None
    return b"".join(raw[i : i + 8][::-1] for i in range(0, HASH_LEN, 8))


def sha256_to_shard_bytes(digest: bytes) -> bytes:
    """Lay out a sha256 digest as shards store it: the hash layout applied to its hex digest."""
    return string_to_hash(digest.hex())


def shard_bytes_to_sha256(stored: bytes) -> bytes:
    """Invert `sha256_to_shard_bytes`: the raw sha256 digest of the 32 bytes a shard stores."""
    return bytes.fromhex(hash_to_string(stored))


def last_u64(raw: bytes) -> int:
    """The hash's last 8 bytes as a little-endian integer: what Merkle grouping and dedup eligibility test."""
    return int.from_bytes(raw[24:32], "little")


def truncated_hash(raw: bytes) -> int:
    """The hash's first 8 bytes as a little-endian integer: the key of a shard's lookup tables."""
    return int.from_bytes(raw[:8], "little")


def hash_sort_key(raw: bytes) -> tuple[int, int, int, int]:
    """Order hashes as the client does: lexicographically over their four little-endian u64 values."""
    first, second, third, fourth = _FOUR_U64.unpack(raw)
    return first, second, third, fourth


def chunk_hash(data: bytes | bytearray | memoryview) -> bytes:
    """Hash one chunk's uncompressed bytes."""
    return blake3.blake3(data, key=DATA_KEY).digest()


def is_global_dedup_eligible(raw_chunk_hash: bytes) -> bool:
    """Whether the client may query the server for this chunk (besides the first chunk of each file)."""
    return last_u64(raw_chunk_hash) % GLOBAL_DEDUP_MODULUS == 0


def _level_strings(hashes: Sequence[bytes]) -> str:
    """The protocol string forms of `hashes`, concatenated (64 hex digits each): one byte swap of every
    u64 for the whole level, instead of a reversal and four slices per hash."""
    words = array.array("Q", b"".join(hashes))
    if len(words) != len(hashes) * 4:
        raise InvalidXetHash(f"a Xet hash is {HASH_LEN} bytes")
    if sys.byteorder == "little":
        words.byteswap()  # each u64 printed most significant digit first
    return words.tobytes().hex()


def _parents(nodes: Sequence[ChunkRef]) -> list[ChunkRef]:
    """The next level up of the Merkle tree: each group of nodes hashed into one (see `_group_length`)."""
    hexes = _level_strings([h for h, _ in nodes])
    lines = [f"{hexes[64 * i : 64 * i + 64]} : {size}\n" for i, (_, size) in enumerate(nodes)]
    # The low byte of the last u64 decides the grouping: a multiple of _MERGE_MODULUS closes a group.
    closes = [h[24] % _MERGE_MODULUS == 0 for h, _ in nodes]
    parents: list[ChunkRef] = []
    start = 0
    while start < len(nodes):
        length = _group_length(closes, start)
        text = "".join(lines[start : start + length])
        digest = blake3.blake3(text.encode("ascii"), key=INTERNAL_NODE_KEY).digest()
        parents.append((digest, sum(size for _, size in nodes[start : start + length])))
        start += length
    return parents


def _group_length(closes: Sequence[bool], start: int) -> int:
    """How many nodes from `start` form one group: up to the first from the third on that closes a group,
    at most `_MAX_GROUP`; two or fewer remaining go together."""
    remaining = len(closes) - start
    if remaining <= 2:
        return remaining
    limit = min(_MAX_GROUP, remaining)
    for i in range(_MIN_GROUP - 1, limit):
        if closes[start + i]:
            return i + 1
    return limit


def merkle_root(chunks: Iterable[ChunkRef]) -> bytes:
    """Root of the Xet Merkle tree over `(hash, length)` pairs; 32 zero bytes for an empty list."""
    nodes = list(chunks)
    if not nodes:
        return bytes(HASH_LEN)
    while len(nodes) > 1:
        nodes = _parents(nodes)
    return nodes[0][0]


def xorb_hash(chunks: Iterable[ChunkRef]) -> bytes:
    """The hash a xorb is stored and addressed under: the Merkle root of its chunks."""
    return merkle_root(chunks)


def file_hash(chunks: Iterable[ChunkRef]) -> bytes:
    """The Xet hash of a file, from all of its chunks in order; 32 zero bytes for the empty file."""
    refs = list(chunks)
    if not refs:
        return EMPTY_FILE_HASH
    return blake3.blake3(merkle_root(refs), key=FILE_KEY).digest()


def verification_hash(chunk_hashes: Iterable[bytes]) -> bytes:
    """The verification entry of a shard term: a keyed hash of the raw chunk hashes it covers."""
    hasher = blake3.blake3(key=VERIFICATION_KEY)
    for raw in chunk_hashes:
        hasher.update(raw)
    return hasher.digest()


def keyed_chunk_hash(raw_chunk_hash: bytes, key: bytes) -> bytes:
    """Protect a chunk hash in a dedup answer with a per-response key, as the client expects."""
    return blake3.blake3(raw_chunk_hash, key=key).digest()

"""The sha256 a shard's claim is checked against, computed from the stored xorbs without re-hashing chunks:
it covers every compression scheme and partial chunk ranges, and any byte changed in storage since the xorb
was verified still shows (a different sha256, or a damaged object refused outright)."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import pytest

from weightyard.repos.content import ContentStore
from weightyard.xet import CompressionScheme, FileTerm, XorbInfo, hash_to_string, serialize_xorb
from weightyard.xet.errors import CorruptXorb

RNG = random.Random(5)
# One chunk per scheme: random bytes stay uncompressed, text compresses with LZ4, floats with BG4 + LZ4.
RANDOM = RNG.randbytes(40_000)
TEXT = b"".join(b"config line %d\n" % i for i in range(3000))
FLOATS = np.linspace(0, 1, 20_000, dtype=np.float32).tobytes()


def _stored(store: ContentStore, chunks: list[bytes]) -> XorbInfo:
    body, info = serialize_xorb(chunks)
    store.add_xorb(body, info, None)
    return info


def _term(info: XorbInfo, start: int, end: int) -> FileTerm:
    return FileTerm(info.hash, sum(c.length for c in info.chunks[start:end]), start, end)


def _xorb_file(tmp_path: Path, info: XorbInfo) -> Path:
    name = hash_to_string(info.hash)
    return tmp_path / "xorbs" / name[:2] / name


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))


def test_sha256_of_a_stored_file_covers_every_scheme_and_partial_chunk_ranges(
    content_store: ContentStore,
) -> None:
    store = content_store
    first = _stored(store, [RANDOM, TEXT, FLOATS])
    assert [c.scheme for c in first.chunks] == list(CompressionScheme)
    extra = RNG.randbytes(1000)
    second = _stored(store, [FLOATS[:4000], extra, TEXT[:5000]])
    terms = (_term(first, 1, 3), _term(second, 0, 2), _term(first, 0, 1), _term(second, 2, 3))
    expected = TEXT + FLOATS + FLOATS[:4000] + extra + RANDOM + TEXT[:5000]
    assert store.sha256_of(terms) == hashlib.sha256(expected).hexdigest()
    assert store.sha256_of(()) == hashlib.sha256(b"").hexdigest()


def test_sha256_of_a_file_spanning_several_read_windows_of_one_reused_buffer(
    content_store: ContentStore,
) -> None:
    store = content_store
    # More chunks than one read window takes, in two xorbs: every window lands in the same buffer.
    chunks = [RNG.randbytes(1000) + TEXT[: i % 3000] for i in range(1500)]
    first, second = _stored(store, chunks[:1200]), _stored(store, chunks[1200:])
    terms = (_term(first, 0, 1200), _term(second, 0, 300))
    assert store.sha256_of(terms) == hashlib.sha256(b"".join(chunks)).hexdigest()


def test_a_payload_byte_changed_in_storage_after_the_upload_changes_the_sha256(
    tmp_path: Path, content_store: ContentStore
) -> None:
    store = content_store
    info = _stored(store, [RANDOM, TEXT])
    terms = (_term(info, 0, 2),)
    honest = store.sha256_of(terms)
    assert honest == hashlib.sha256(RANDOM + TEXT).hexdigest()
    _flip(_xorb_file(tmp_path, info), info.chunks[0].start + 8 + 1234)  # inside the uncompressed chunk
    assert store.sha256_of(terms) != honest


def test_a_damaged_compressed_chunk_header_or_a_truncated_xorb_is_refused_as_damage(
    tmp_path: Path, content_store: ContentStore
) -> None:
    store = content_store
    info = _stored(store, [RANDOM, TEXT])
    terms = (_term(info, 0, 2),)
    _flip(_xorb_file(tmp_path, info), info.chunks[1].start + 4)  # the scheme byte of the LZ4 chunk
    with pytest.raises(CorruptXorb):
        store.sha256_of(terms)
    path = _xorb_file(tmp_path, info)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CorruptXorb):
        store.sha256_of(terms)

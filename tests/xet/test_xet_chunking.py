from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from weightyard.xet.chunking import (
    GEAR_TABLE_VALUES,
    MAX_CHUNK_SIZE,
    MIN_CHUNK_SIZE,
    Chunker,
    chunk_file,
    iter_chunks,
)
from weightyard.xet.hashes import chunk_hash, file_hash

GEAR_TABLE_SHA256 = "e1d3936666d7ae7a977c958e9afcc75f90aaca758ce5fbe4ece61dffefe1912c"
U64 = (1 << 64) - 1
CUT_BELOW = 1 << 48


def reference_chunks(data: bytes) -> list[bytes]:
    """The chunking rule of the Xet specification, byte by byte: slow, but obviously the spec."""
    chunks, start, h = [], 0, 0
    for index, byte in enumerate(data):
        h = ((h << 1) + GEAR_TABLE_VALUES[byte]) & U64
        size = index + 1 - start
        if size < MIN_CHUNK_SIZE:
            continue
        if size >= MAX_CHUNK_SIZE or h < CUT_BELOW:
            chunks.append(data[start : index + 1])
            start, h = index + 1, 0
    if start < len(data):
        chunks.append(data[start:])
    return chunks


def gear_at(data: bytes | bytearray, index: int) -> int:
    h = 0
    for byte in data[index - 63 : index + 1]:
        h = ((h << 1) + GEAR_TABLE_VALUES[byte]) & U64
    return h


def data_with_first_match_at(index: int, seed: int) -> bytes:
    """Random bytes whose first gear-hash match at or after byte 8000 is exactly at `index`."""
    rng = random.Random(seed)
    table = np.array(GEAR_TABLE_VALUES, dtype=np.uint64)
    while True:
        data = bytearray(rng.randbytes(3 * MIN_CHUNK_SIZE))
        base = 0
        for byte in data[index - 63 : index - 1]:
            base = ((base << 1) + GEAR_TABLE_VALUES[byte]) & U64
        base = (base << 2) & U64
        # Choose the last two bytes of the window so that the hash at `index` passes the mask.
        with np.errstate(over="ignore"):
            totals = np.uint64(base) + (table[:, None] << np.uint64(1)) + table[None, :]
        hits = np.argwhere(totals < np.uint64(CUT_BELOW))
        if len(hits) == 0:
            continue
        data[index - 1], data[index] = (int(v) for v in hits[0])
        assert gear_at(data, index) < CUT_BELOW
        if all(gear_at(data, i) >= CUT_BELOW for i in range(8000, index)):
            return bytes(data)


def test_gear_table_is_the_published_one(xet_data: Path) -> None:
    lines = (xet_data / "gear-table.txt").read_text().splitlines()
    published = [int(line, 16) for line in lines if line.startswith("0x")]
    assert list(GEAR_TABLE_VALUES) == published
    packed = struct.pack("<256Q", *GEAR_TABLE_VALUES)
    assert hashlib.sha256(packed).hexdigest() == GEAR_TABLE_SHA256


def test_chunks_match_the_byte_by_byte_rule_of_the_spec() -> None:
    rng = random.Random(7)
    data = rng.randbytes(600_000) + bytes(300_000) + b"weights " * 20_000
    assert list(iter_chunks([data])) == reference_chunks(data)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("random", random.Random(1).randbytes(5 << 20)),
        ("zeros", bytes(1_000_000)),
        ("text", b"".join(b"line %d of a config file\n" % i for i in range(200_000))),
        ("float32", np.linspace(-1, 1, 600_000, dtype=np.float32).tobytes()),
        ("below minimum", random.Random(2).randbytes(MIN_CHUNK_SIZE - 1)),
        ("one byte", b"x"),
    ],
)
def test_file_hash_matches_the_client(
    name: str, data: bytes, client_file_hash: Callable[[bytes], bytes]
) -> None:
    chunked = chunk_file([data])
    assert chunked.size == len(data)
    assert b"".join(iter_chunks([data])) == data
    assert chunked.file_hash == client_file_hash(data), name


@pytest.mark.parametrize("index", [MIN_CHUNK_SIZE - 2, MIN_CHUNK_SIZE - 1, MIN_CHUNK_SIZE, 20_000])
def test_cut_position_near_the_minimum_matches_the_client(
    index: int, client_file_hash: Callable[[bytes], bytes]
) -> None:
    data = data_with_first_match_at(index, seed=index)
    first = next(iter_chunks([data]))
    if index + 1 >= MIN_CHUNK_SIZE:
        assert len(first) == index + 1
    else:
        assert len(first) > MIN_CHUNK_SIZE
    assert chunk_file([data]).file_hash == client_file_hash(data)


def test_chunk_never_exceeds_the_maximum() -> None:
    assert [len(c) for c in iter_chunks([bytes(300_000)])] == [MAX_CHUNK_SIZE, MAX_CHUNK_SIZE, 37_856]


def test_empty_stream_has_no_chunk_and_the_zero_hash() -> None:
    assert list(iter_chunks([])) == []
    assert chunk_file([b""]).file_hash == bytes(32)


def test_split_points_of_the_input_do_not_change_the_chunks() -> None:
    rng = random.Random(3)
    data = rng.randbytes(3 << 20)
    whole = list(iter_chunks([data]))
    pieces, position = [], 0
    while position < len(data):
        size = rng.choice([1, 63, 64, 4096, 70_000, 1 << 20, 3 << 20])
        pieces.append(data[position : position + size])
        position += size
    assert list(iter_chunks(pieces)) == whole


def test_chunker_returns_chunks_before_the_stream_ends() -> None:
    chunker = Chunker()
    data = random.Random(4).randbytes(2 << 20)
    early = chunker.update(data[: 1 << 20]) + chunker.update(data[1 << 20 :])
    late = chunker.finish()
    assert len(early) > 10
    assert len(late) == 1
    assert b"".join(early + late) == data


def test_insertion_changes_only_nearby_chunks() -> None:
    rng = random.Random(5)
    data = rng.randbytes(4 << 20)
    edited = data[: 2 << 20] + rng.randbytes(100) + data[2 << 20 :]
    before = {c.hash for c in chunk_file([data]).chunks}
    after = [c.hash for c in chunk_file([edited]).chunks]
    assert sum(h not in before for h in after) <= 2


def test_chunk_spans_cover_the_file_with_their_hashes() -> None:
    data = random.Random(6).randbytes(1 << 20)
    chunked = chunk_file([data])
    assert chunked.file_hash == file_hash(chunked.chunk_refs())
    position = 0
    for span in chunked.chunks:
        assert span.offset == position
        assert span.hash == chunk_hash(data[span.offset : span.offset + span.length])
        position += span.length
    assert position == len(data)

from __future__ import annotations

import random

import lz4.frame  # type: ignore[import-untyped]
import numpy as np
import pytest

from weightyard.xet import (
    MAX_XORB_LEN,
    ChunkDecompressionError,
    CompressionScheme,
    CorruptXorb,
    InvalidXorb,
    XorbHashMismatch,
    XorbParser,
    XorbTooLarge,
    build_xorb_footer,
    chunk_hash,
    pack_chunk_table,
    parse_xorb,
    parse_xorb_footer,
    serialize_xorb,
    unpack_chunk_table,
    xorb_hash,
)
from weightyard.xet.xorb import byte_group, byte_ungroup, chunk_header, encode_chunk_payload, iter_chunk_data

RNG = random.Random(21)
RANDOM_CHUNK = RNG.randbytes(40_000)
TEXT_CHUNK = b"".join(b"config line %d\n" % i for i in range(3000))
FLOAT_CHUNK = np.linspace(0, 1, 20_000, dtype=np.float32).tobytes()
CHUNKS = [RANDOM_CHUNK, TEXT_CHUNK, FLOAT_CHUNK]


def test_limit_is_64_mib_plus_one_header_per_chunk() -> None:
    assert MAX_XORB_LEN == 67_174_400


@pytest.mark.parametrize(
    ("header", "scheme", "payload_len", "length"),
    [
        ("000f6700000f6700", CompressionScheme.NONE, 26_383, 26_383),
        ("001b570001c2ad00", CompressionScheme.LZ4, 22_299, 44_482),
        # The spec prints this header's payload length as 122 994; its bytes say 0x01dc72 = 121 970.
        ("0072dc0102000002", CompressionScheme.BYTE_GROUPING_4_LZ4, 121_970, 131_072),
    ],
)
def test_chunk_header_matches_the_captured_headers(
    header: str, scheme: CompressionScheme, payload_len: int, length: int
) -> None:
    assert chunk_header(scheme, payload_len, length) == bytes.fromhex(header)


def test_lz4_payload_is_a_frame_with_the_client_flags() -> None:
    payload = encode_chunk_payload(TEXT_CHUNK, CompressionScheme.LZ4)
    assert payload[:6] == bytes.fromhex("04224d186040")
    assert lz4.frame.decompress(payload) == TEXT_CHUNK


@pytest.mark.parametrize("length", range(10))
def test_byte_grouping_puts_byte_i_of_each_word_in_group_i(length: int) -> None:
    data = bytes(range(100, 100 + length))
    grouped = byte_group(data)
    expected = b"".join(data[i::4] for i in range(4))
    assert grouped == expected
    assert byte_ungroup(grouped) == data


@pytest.mark.parametrize("scheme", [*CompressionScheme, None])
def test_serialized_xorb_parses_back_to_the_same_table(scheme: CompressionScheme | None) -> None:
    body, info = serialize_xorb(CHUNKS, scheme)
    assert parse_xorb(body, info.hash) == info
    assert b"".join(iter_chunk_data(body)) == b"".join(CHUNKS)
    assert info.hash == xorb_hash((chunk_hash(c), len(c)) for c in CHUNKS)
    assert info.raw_len == sum(map(len, CHUNKS))
    assert info.serialized_len == len(body)


def test_automatic_encoding_picks_a_scheme_per_chunk() -> None:
    _, info = serialize_xorb(CHUNKS)
    assert [c.scheme for c in info.chunks] == [
        CompressionScheme.NONE,
        CompressionScheme.LZ4,
        CompressionScheme.BYTE_GROUPING_4_LZ4,
    ]


def test_parser_fed_one_byte_at_a_time_hands_out_each_chunk_once() -> None:
    body, info = serialize_xorb(CHUNKS)
    completed: list[bytes] = []
    parser = XorbParser(on_chunk=lambda data: completed.append(bytes(data)))  # valid during the call only
    for i in range(len(body)):
        parser.feed(body[i : i + 1])
    assert completed == CHUNKS
    assert parser.finish(info.hash) == info


def test_footer_round_trips_and_locates_every_chunk() -> None:
    body, info = serialize_xorb(CHUNKS)
    stored = body + build_xorb_footer(info)
    assert parse_xorb_footer(stored) == info
    # Fetch ranges stop before the footer: the body itself still parses as an upload.
    assert parse_xorb(stored[: info.serialized_len], info.hash) == info


def test_footer_that_disagrees_with_the_chunks_is_rejected() -> None:
    body, _ = serialize_xorb(CHUNKS)
    _, other_info = serialize_xorb([RANDOM_CHUNK, FLOAT_CHUNK, TEXT_CHUNK], CompressionScheme.NONE)
    with pytest.raises(InvalidXorb):
        parse_xorb_footer(body + build_xorb_footer(other_info))


def test_wrong_expected_hash_is_rejected_with_a_stable_code() -> None:
    body, _ = serialize_xorb(CHUNKS)
    with pytest.raises(XorbHashMismatch) as caught:
        parse_xorb(body, b"\x00" * 32)
    assert (caught.value.code, caught.value.status) == ("XetXorbHashMismatch", 400)


def test_flipped_payload_byte_is_caught_by_the_recomputed_hash() -> None:
    body, info = serialize_xorb([RANDOM_CHUNK], CompressionScheme.NONE)
    forged = bytearray(body)
    forged[100] ^= 1
    with pytest.raises(XorbHashMismatch):
        parse_xorb(bytes(forged), info.hash)


def test_forged_chunk_does_not_verify_under_the_honest_hash() -> None:
    _, honest = serialize_xorb(CHUNKS)
    forged_body, _ = serialize_xorb([RANDOM_CHUNK, b"malicious" * 100, FLOAT_CHUNK])
    with pytest.raises(XorbHashMismatch):
        parse_xorb(forged_body, honest.hash)


def _raw_chunk(version: int, payload_len: int, scheme: int, length: int, payload: bytes) -> bytes:
    return (
        bytes([version])
        + payload_len.to_bytes(3, "little")
        + bytes([scheme])
        + length.to_bytes(3, "little")
        + payload
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "no chunk"),
        (_raw_chunk(1, 4, 0, 4, b"abcd"), "version"),
        (_raw_chunk(0, 4, 3, 4, b"abcd"), "scheme"),
        (_raw_chunk(0, 4, 99, 4, b"abcd"), "scheme"),
        (_raw_chunk(0, 4, 0, 131_073, b"abcd"), "uncompressed length"),
        (_raw_chunk(0, 0, 0, 0, b""), "uncompressed length"),
        (_raw_chunk(0, 262_145, 1, 10, b""), "payload length"),
        (_raw_chunk(0, 4, 0, 4, b"abc"), "truncated"),
        (_raw_chunk(0, 4, 0, 4, b"abcd")[:5], "truncated"),
        (_raw_chunk(0, 4, 0, 4, b"abcd") + b"XETBLOB\x01", "version"),
    ],
)
def test_malformed_chunk_sequence_is_rejected(body: bytes, message: str) -> None:
    with pytest.raises(InvalidXorb, match=message) as caught:
        parse_xorb(body)
    assert caught.value.status == 400


def test_uncompressed_chunk_with_mismatched_lengths_is_rejected() -> None:
    with pytest.raises(ChunkDecompressionError):
        parse_xorb(_raw_chunk(0, 5, 0, 4, b"abcde"))


def test_lz4_bomb_is_stopped_at_the_declared_length() -> None:
    bomb = lz4.frame.compress(bytes(50 << 20))
    assert len(bomb) < 300_000
    with pytest.raises(ChunkDecompressionError, match="exactly"):
        parse_xorb(_raw_chunk(0, len(bomb), 1, 1000, bomb))


@pytest.mark.parametrize(
    ("payload", "declared"),
    [
        (lz4.frame.compress(b"x" * 1000), 999),
        (lz4.frame.compress(b"x" * 1000), 1001),
        (lz4.frame.compress(b"x" * 1000) + b"trailing", 1000),
        (lz4.frame.compress(b"x" * 1000)[:-4], 1000),
        (b"not an lz4 frame at all", 100),
    ],
)
def test_lz4_payload_not_decoding_to_exactly_its_length_is_rejected(payload: bytes, declared: int) -> None:
    for scheme in (CompressionScheme.LZ4, CompressionScheme.BYTE_GROUPING_4_LZ4):
        with pytest.raises(ChunkDecompressionError) as caught:
            parse_xorb(_raw_chunk(0, len(payload), scheme, declared, payload))
        assert caught.value.code == "XetChunkDecompression"


def test_oversize_body_fails_as_soon_as_it_passes_the_limit() -> None:
    parser = XorbParser(max_len=100_000)
    parser.feed(chunk_header(CompressionScheme.NONE, 131_072, 131_072))
    with pytest.raises(XorbTooLarge) as caught:
        parser.feed(b"\x00" * 100_000)
    assert caught.value.status == 413


def test_xorb_at_the_clients_limits_is_accepted_and_one_byte_more_is_not() -> None:
    chunk = RNG.randbytes(8 * 1024)
    body, info = serialize_xorb([chunk] * 8192, CompressionScheme.NONE)
    assert len(body) == MAX_XORB_LEN
    assert parse_xorb(body, info.hash).raw_len == 64 << 20
    with pytest.raises(XorbTooLarge):
        parse_xorb([body, b"\x00"])


def test_more_chunks_than_the_client_ever_sends_are_rejected() -> None:
    body, _ = serialize_xorb([b"a"] * 20)
    parser = XorbParser(max_chunks=10)
    with pytest.raises(InvalidXorb, match="more than 10 chunks"):
        parser.feed(body)


def test_chunk_table_blob_round_trips_at_41_bytes_a_chunk() -> None:
    _, info = serialize_xorb(CHUNKS)
    blob = pack_chunk_table(info)
    assert len(blob) == 41 * len(CHUNKS)
    assert unpack_chunk_table(info.hash, blob) == info


@pytest.mark.parametrize(
    "damage",
    [
        lambda blob: blob[:-1],
        lambda blob: b"",
        lambda blob: blob[:40] + b"\x07" + blob[41:],  # unknown scheme
        lambda blob: blob[:32] + b"\x00\x00\x00\x00" + blob[36:],  # zero length
        lambda blob: blob[:36] + b"\x01\x00\x00\x00" + blob[40:],  # ends before its header
    ],
)
def test_damaged_chunk_table_blob_is_reported_as_corruption(damage: object) -> None:
    assert callable(damage)
    _, info = serialize_xorb(CHUNKS)
    with pytest.raises(CorruptXorb) as caught:
        unpack_chunk_table(info.hash, damage(pack_chunk_table(info)))
    assert caught.value.status == 500

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import blake3
import pytest

from weightyard.xet.errors import InvalidXetHash
from weightyard.xet.hashes import (
    DATA_KEY,
    EMPTY_FILE_HASH,
    INTERNAL_NODE_KEY,
    VERIFICATION_KEY,
    chunk_hash,
    file_hash,
    hash_sort_key,
    hash_to_string,
    is_global_dedup_eligible,
    keyed_chunk_hash,
    merkle_root,
    sha256_to_shard_bytes,
    shard_bytes_to_sha256,
    string_to_hash,
    verification_hash,
    xorb_hash,
)

# The keys as the Xet specification (huggingface/xet-core) prints them.
SPEC_DATA_KEY = [102, 151, 245, 119, 91, 149, 80, 222, 49, 53, 203, 172, 165, 151, 24, 28, 157, 228, 33, 16]
SPEC_DATA_KEY += [155, 235, 43, 88, 180, 208, 176, 75, 147, 173, 242, 41]
SPEC_INTERNAL_KEY = [1, 126, 197, 199, 165, 71, 41, 150, 253, 148, 102, 102, 180, 138, 2, 230, 93, 221, 83]
SPEC_INTERNAL_KEY += [111, 55, 199, 109, 210, 248, 99, 82, 230, 74, 83, 113, 63]
SPEC_VERIFICATION_KEY = [127, 24, 87, 214, 206, 86, 237, 102, 18, 127, 249, 19, 231, 165, 195, 243, 164, 205]
SPEC_VERIFICATION_KEY += [38, 213, 181, 219, 73, 230, 65, 36, 152, 127, 40, 251, 148, 195]


def test_keys_are_the_ones_the_spec_prints() -> None:
    assert list(DATA_KEY) == SPEC_DATA_KEY
    assert list(INTERNAL_NODE_KEY) == SPEC_INTERNAL_KEY
    assert list(VERIFICATION_KEY) == SPEC_VERIFICATION_KEY


def test_hash_string_reverses_each_eight_byte_group() -> None:
    text = hash_to_string(bytes(range(32)))
    assert text == "07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918"
    assert string_to_hash(text) == bytes(range(32))


def test_every_hash_string_in_the_examples_round_trips(examples: dict[str, Any]) -> None:
    # Hashes appear as JSON keys and values and inside URL paths: take every 64-hex-digit run.
    strings = set(re.findall(r"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])", json.dumps(examples)))
    assert len(strings) >= 4
    for text in strings:
        assert hash_to_string(string_to_hash(text)) == text


@pytest.mark.parametrize("text", ["", "00" * 31, "zz" * 32, "0" * 65])
def test_malformed_hash_string_is_rejected_with_a_stable_code(text: str) -> None:
    with pytest.raises(InvalidXetHash) as caught:
        string_to_hash(text)
    assert caught.value.code == "XetInvalidHash"
    assert caught.value.status == 400


def test_raw_hash_of_wrong_length_is_rejected() -> None:
    with pytest.raises(InvalidXetHash):
        hash_to_string(b"\x00" * 31)


def test_shard_sha256_layout_matches_the_captured_bytes() -> None:
    # run5 0004.shard: content sha256 de11cff2fb3c3385… is stored as 85 33 3c fb f2 cf 11 de …
    digest = bytes.fromhex("de11cff2fb3c3385485d16612999947536c9e4b0995bca535158984be3ca2c91")
    stored = sha256_to_shard_bytes(digest)
    assert stored[:8] == bytes.fromhex("85333cfbf2cf11de")
    assert hash_to_string(stored) == digest.hex()
    assert shard_bytes_to_sha256(stored) == digest


def test_chunk_hash_is_blake3_keyed_with_the_data_key() -> None:
    assert chunk_hash(b"abc") == blake3.blake3(b"abc", key=bytes(SPEC_DATA_KEY)).digest()


def test_one_chunk_xorb_hash_is_its_chunk_hash() -> None:
    h = chunk_hash(b"only chunk")
    assert xorb_hash([(h, 10)]) == h


def test_two_and_three_nodes_merge_into_one_parent() -> None:
    refs = [(chunk_hash(bytes([i])), 1 + i) for i in range(3)]
    for count in (2, 3):
        text = "".join(f"{hash_to_string(h)} : {size}\n" for h, size in refs[:count])
        expected = blake3.blake3(text.encode(), key=bytes(SPEC_INTERNAL_KEY)).digest()
        assert merkle_root(refs[:count]) == expected


def test_merkle_group_closes_after_first_hash_divisible_by_four() -> None:
    # Pick hashes so that node 2 has last u64 % 4 == 0: groups are [0, 1, 2] and [3, 4], then the root.
    def fake(last: int, tag: int) -> bytes:
        return bytes([tag]) * 24 + last.to_bytes(8, "little")

    refs = [(fake(1, 1), 10), (fake(1, 2), 20), (fake(4, 3), 30), (fake(1, 4), 40), (fake(1, 5), 50)]

    def node(children: list[tuple[bytes, int]]) -> tuple[bytes, int]:
        text = "".join(f"{hash_to_string(h)} : {size}\n" for h, size in children)
        return blake3.blake3(text.encode(), key=INTERNAL_NODE_KEY).digest(), sum(s for _, s in children)

    expected = node([node(refs[:3]), node(refs[3:])])[0]
    assert merkle_root(refs) == expected


def test_file_hash_of_small_input_matches_the_client(client_file_hash: Callable[[bytes], bytes]) -> None:
    data = b"hello"
    assert file_hash([(chunk_hash(data), len(data))]) == client_file_hash(data)


def test_empty_file_hash_is_zero_like_the_client(client_file_hash: Callable[[bytes], bytes]) -> None:
    assert file_hash([]) == EMPTY_FILE_HASH == bytes(32) == client_file_hash(b"")


def test_file_hash_differs_from_xorb_hash_of_the_same_chunks() -> None:
    refs = [(chunk_hash(b"a"), 1), (chunk_hash(b"b"), 1)]
    assert file_hash(refs) == blake3.blake3(xorb_hash(refs), key=bytes(32)).digest()
    assert file_hash(refs) != xorb_hash(refs)


def test_verification_hash_covers_the_concatenated_raw_chunk_hashes() -> None:
    hashes = [chunk_hash(bytes([i])) for i in range(5)]
    expected = blake3.blake3(b"".join(hashes[1:4]), key=bytes(SPEC_VERIFICATION_KEY)).digest()
    assert verification_hash(hashes[1:4]) == expected
    assert verification_hash(hashes[1:4]) != verification_hash(hashes[1:5])


def test_keyed_chunk_hash_depends_on_the_key() -> None:
    h = chunk_hash(b"x")
    assert keyed_chunk_hash(h, bytes(32)) != keyed_chunk_hash(h, b"\x01" * 32)
    assert keyed_chunk_hash(h, b"\x01" * 32) == blake3.blake3(h, key=b"\x01" * 32).digest()


def test_dedup_eligibility_reads_the_last_u64() -> None:
    assert is_global_dedup_eligible(b"\xff" * 24 + (1024 * 7).to_bytes(8, "little"))
    assert not is_global_dedup_eligible(b"\x00" * 24 + (1024 * 7 + 1).to_bytes(8, "little"))


def test_hash_order_is_over_little_endian_words() -> None:
    low_first_byte_high_word = bytes([0xFF]) + bytes(6) + bytes([0x00]) + bytes(24)
    high_last_byte = bytes(7) + bytes([0x01]) + bytes(24)
    assert hash_sort_key(low_first_byte_high_word) < hash_sort_key(high_last_byte)

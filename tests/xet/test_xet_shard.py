from __future__ import annotations

import hashlib
import random
import struct
from dataclasses import replace

import pytest

from weightyard.xet import (
    FileTerm,
    InvalidShard,
    Shard,
    ShardFooter,
    ShardTooLarge,
    ShardVerificationError,
    UnknownXorb,
    XorbInfo,
    dedup_index_entries,
    dedup_shard,
    file_entry,
    file_hash,
    hash_to_string,
    keyed_chunk_hash,
    parse_shard,
    serialize_shard,
    serialize_xorb,
    shard_xorb,
    string_to_hash,
    verify_shard,
)
from weightyard.xet.shard import FOOTER_LEN, SHARD_TAG, ShardChunk, ShardFile, ShardXorb

RNG = random.Random(31)
CHUNKS = [RNG.randbytes(RNG.randint(100, 5000)) for _ in range(12)]
OTHER_CHUNKS = [RNG.randbytes(RNG.randint(100, 5000)) for _ in range(5)]
_, XORB = serialize_xorb(CHUNKS)
_, OTHER = serialize_xorb(OTHER_CHUNKS)
STORED = {XORB.hash: XORB, OTHER.hash: OTHER}
BOOKEND = b"\xff" * 32 + bytes(16)


def term(info: XorbInfo, start: int, end: int) -> FileTerm:
    return FileTerm(info.hash, sum(c.length for c in info.chunks[start:end]), start, end)


def honest_file() -> ShardFile:
    terms = [term(XORB, 0, 7), term(OTHER, 1, 4), term(XORB, 5, 12)]
    content = b"".join(CHUNKS[0:7] + OTHER_CHUNKS[1:4] + CHUNKS[5:12])
    return file_entry(terms, STORED.get, hashlib.sha256(content).digest())


def honest_shard() -> Shard:
    return Shard((honest_file(),), (shard_xorb(XORB), shard_xorb(OTHER)))


def test_honest_upload_shard_round_trips_and_verifies() -> None:
    body = serialize_shard(honest_shard())
    parsed = parse_shard(body)
    assert parsed == honest_shard()
    verify_shard(parsed, STORED.get)


def test_file_entry_hashes_the_chunks_its_terms_name() -> None:
    refs = [(c.hash, c.length) for c in XORB.chunks[0:7] + OTHER.chunks[1:4] + XORB.chunks[5:12]]
    entry = honest_file()
    assert entry.file_hash == file_hash(refs)
    assert entry.size == sum(length for _, length in refs)


def test_layout_matches_the_smallest_captured_shard() -> None:
    # run5 0004.shard: one file of one term (xorb 92f17a16…, chunks [0, 337), 20 971 520 bytes), no xorbs.
    xorb = string_to_hash("92f17a16b7da20270a7953111b9f9c6d1fa3f5701fd26dd8a04084d1f3dfe8d9")
    sha256 = bytes.fromhex("de11cff2fb3c3385485d16612999947536c9e4b0995bca535158984be3ca2c91")
    entry = ShardFile(b"\x11" * 32, (FileTerm(xorb, 20_971_520, 0, 337),), (b"\x22" * 32,), sha256)
    body = serialize_shard(Shard((entry,), ()))
    assert len(body) == 336
    assert body[:0x20] == SHARD_TAG
    assert body[0x20:0x30] == bytes.fromhex("0200000000000000 0000000000000000")
    assert body[0x50:0x60] == bytes.fromhex("000000c0 01000000 0000000000000000")
    assert body[0x60:0x68] == bytes.fromhex("2720dab7167af192")
    assert body[0x80:0x90] == bytes.fromhex("00000000 00004001 00000000 51010000")
    assert body[0xC0:0xC8] == bytes.fromhex("85333cfbf2cf11de")
    assert body[0xF0:0x120] == body[0x120:0x150] == BOOKEND


def test_dedup_shard_has_keyed_chunk_hashes_lookup_tables_and_footer() -> None:
    key = bytes(range(32))
    body = dedup_shard([OTHER, XORB], hmac_key=key, created=1_700_000_000, expiry=1_700_600_000)
    assert struct.unpack_from("<Q", body, 40) == (FOOTER_LEN,)
    parsed = parse_shard(body)
    assert parsed.files == ()
    assert parsed.footer == ShardFooter(key, 1_700_000_000, 1_700_600_000)
    described = {x.hash: x for x in parsed.xorbs}
    for info in (XORB, OTHER):
        assert [c.hash for c in described[info.hash].chunks] == [
            keyed_chunk_hash(c.hash, key) for c in info.chunks
        ]
        assert described[info.hash].raw_len == info.raw_len
    (footer_offset,) = struct.unpack_from("<Q", body, len(body) - 8)
    assert footer_offset == len(body) - FOOTER_LEN


def test_dedup_shard_chunk_lookup_is_sorted_and_points_at_each_chunk() -> None:
    key = b"\x07" * 32
    body = dedup_shard([XORB, OTHER], hmac_key=key, created=1, expiry=2)
    footer = struct.unpack_from("<9Q", body, len(body) - FOOTER_LEN)
    chunk_offset, chunk_count = footer[7], footer[8]
    assert chunk_count == len(XORB.chunks) + len(OTHER.chunks)
    entries = [struct.unpack_from("<QII", body, chunk_offset + 16 * i) for i in range(chunk_count)]
    assert [e[0] for e in entries] == sorted(e[0] for e in entries)
    for truncated, record_index, position in entries:
        record = 48 + 48 + 48 * (record_index + 1 + position)  # header, empty file section, xorb records
        assert struct.unpack_from("<Q", body, record) == (truncated,)


def test_footer_with_wrong_lookup_tables_is_rejected() -> None:
    body = bytearray(dedup_shard([XORB], hmac_key=b"\x01" * 32, created=1, expiry=2))
    chunk_offset = struct.unpack_from("<9Q", body, len(body) - FOOTER_LEN)[7]
    body[chunk_offset + 8] ^= 1
    with pytest.raises(InvalidShard, match="lookup tables"):
        parse_shard(bytes(body))


def _body() -> bytes:
    return serialize_shard(honest_shard())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"XX" + b[2:], "tag"),
        (lambda b: b[:32] + struct.pack("<Q", 3) + b[40:], "version"),
        (lambda b: b[:40] + struct.pack("<Q", 100) + b[48:], "footer size"),
        # Claiming a footer it lacks makes the last 200 bytes disappear from the sections.
        (lambda b: b[:40] + struct.pack("<Q", 200) + b[48:], "past its end"),
        (lambda b: b[:20], "header"),
        (lambda b: b[:-48], "truncated"),
        (lambda b: b[:-10], "truncated"),
        (lambda b: b + b"\x00" * 48, "trailing"),
        (lambda b: b[: 48 + 32] + struct.pack("<I", 0x20000000 | 0xC0000000) + b[48 + 36 :], "unknown flags"),
        (lambda b: b[: 48 + 36] + struct.pack("<I", 10**6) + b[48 + 40 :], "past its end"),
        (lambda b: b[:-20] + b"\x01" + b[-19:], "bookend"),
    ],
)
def test_malformed_shard_is_rejected(mutate: object, message: str) -> None:
    assert callable(mutate)
    with pytest.raises(InvalidShard, match=message) as caught:
        parse_shard(mutate(_body()))
    assert (caught.value.code, caught.value.status) == ("XetInvalidShard", 400)


def test_shard_over_the_size_limit_is_rejected() -> None:
    with pytest.raises(ShardTooLarge) as caught:
        parse_shard(_body(), max_len=100)
    assert caught.value.status == 413


def _verify_file(entry: ShardFile) -> None:
    verify_shard(Shard((entry,), ()), STORED.get)


def test_term_naming_a_xorb_the_server_lacks_is_rejected() -> None:
    entry = honest_file()
    missing = replace(entry.terms[0], xorb_hash=b"\x42" * 32)
    with pytest.raises(UnknownXorb, match=hash_to_string(b"\x42" * 32)):
        _verify_file(replace(entry, terms=(missing, *entry.terms[1:])))


@pytest.mark.parametrize(("start", "end"), [(3, 3), (5, 4), (0, 13), (12, 13)])
def test_term_outside_the_xorb_is_rejected(start: int, end: int) -> None:
    entry = honest_file()
    bad = FileTerm(XORB.hash, 1000, start, end)
    with pytest.raises(ShardVerificationError, match="outside"):
        _verify_file(replace(entry, terms=(bad, *entry.terms[1:])))


def test_term_with_a_wrong_length_is_rejected() -> None:
    entry = honest_file()
    bad = replace(entry.terms[0], unpacked_len=entry.terms[0].unpacked_len + 1)
    with pytest.raises(ShardVerificationError, match="unpacked length"):
        _verify_file(replace(entry, terms=(bad, *entry.terms[1:])))


def test_forged_verification_entry_is_rejected() -> None:
    entry = honest_file()
    assert entry.verification is not None
    forged = (entry.verification[0], b"\x00" * 32, entry.verification[2])
    with pytest.raises(ShardVerificationError, match=r"term 1 .* verification hash"):
        _verify_file(replace(entry, verification=forged))


def test_verification_entries_swapped_between_terms_are_rejected() -> None:
    entry = honest_file()
    assert entry.verification is not None
    swapped = (entry.verification[2], entry.verification[1], entry.verification[0])
    with pytest.raises(ShardVerificationError, match="verification hash"):
        _verify_file(replace(entry, verification=swapped))


def test_wrong_file_hash_is_rejected() -> None:
    with pytest.raises(ShardVerificationError, match="different file hash"):
        _verify_file(replace(honest_file(), file_hash=b"\x00" * 32))


def test_file_with_terms_reordered_no_longer_matches_its_hash() -> None:
    entry = honest_file()
    assert entry.verification is not None
    terms = (entry.terms[2], entry.terms[1], entry.terms[0])
    verification = (entry.verification[2], entry.verification[1], entry.verification[0])
    with pytest.raises(ShardVerificationError, match="different file hash"):
        _verify_file(replace(entry, terms=terms, verification=verification))


@pytest.mark.parametrize("field", ["verification", "sha256"])
def test_file_without_verification_or_sha256_is_rejected(field: str) -> None:
    with pytest.raises(ShardVerificationError, match="lacks"):
        _verify_file(replace(honest_file(), **{field: None}))


def test_file_without_terms_is_rejected() -> None:
    with pytest.raises(ShardVerificationError, match="no term"):
        _verify_file(ShardFile(b"\x01" * 32, (), (), hashlib.sha256(b"").digest()))


def test_empty_file_is_accepted_with_the_zero_hash_and_the_empty_sha256() -> None:
    _verify_file(ShardFile(bytes(32), (), (), hashlib.sha256(b"").digest()))


def test_empty_file_with_another_files_sha256_is_rejected() -> None:
    with pytest.raises(ShardVerificationError, match="sha256"):
        _verify_file(ShardFile(bytes(32), (), (), hashlib.sha256(b"secret").digest()))


def _poisoned(block: ShardXorb) -> None:
    verify_shard(Shard((), (block,)), STORED.get)


def test_xorb_section_must_name_stored_xorbs() -> None:
    with pytest.raises(UnknownXorb):
        _poisoned(replace(shard_xorb(XORB), hash=b"\x05" * 32))


def test_xorb_section_claiming_a_foreign_chunk_is_rejected() -> None:
    honest = shard_xorb(XORB)
    poisoned = ShardChunk(OTHER.chunks[0].hash, honest.chunks[3].raw_offset, honest.chunks[3].length)
    chunks = (*honest.chunks[:3], poisoned, *honest.chunks[4:])
    with pytest.raises(ShardVerificationError, match="chunk 3"):
        _poisoned(replace(honest, chunks=chunks))


@pytest.mark.parametrize(
    "change",
    [
        {"raw_len": XORB.raw_len + 1},
        {"chunks": shard_xorb(XORB).chunks[:-1]},
        {"chunks": (replace(shard_xorb(XORB).chunks[0], raw_offset=1), *shard_xorb(XORB).chunks[1:])},
        {"chunks": (replace(shard_xorb(XORB).chunks[0], length=1), *shard_xorb(XORB).chunks[1:])},
    ],
)
def test_xorb_section_that_misdescribes_the_xorb_is_rejected(change: dict[str, object]) -> None:
    with pytest.raises(ShardVerificationError):
        _poisoned(replace(shard_xorb(XORB), **change))  # type: ignore[arg-type]


def test_xorb_section_may_describe_a_xorb_again_or_not_at_all() -> None:
    verify_shard(Shard((honest_file(),), (shard_xorb(XORB), shard_xorb(XORB))), STORED.get)
    verify_shard(Shard((honest_file(),), ()), STORED.get)


def test_uploaded_shard_with_keyed_chunk_hashes_is_rejected() -> None:
    keyed = parse_shard(dedup_shard([XORB], hmac_key=b"\x03" * 32, created=1, expiry=2))
    with pytest.raises(ShardVerificationError, match="keyed"):
        verify_shard(keyed, STORED.get)


def test_shard_naming_more_chunks_than_the_budget_is_refused_before_hashing() -> None:
    calls: list[bytes] = []

    def counting_lookup(xorb: bytes) -> XorbInfo | None:
        calls.append(xorb)
        return STORED.get(xorb)

    many = Shard(tuple(honest_file() for _ in range(10)), ())
    verify_shard(many, counting_lookup, max_chunk_refs=10 * 17)
    assert len(calls) == 2  # one lookup per distinct xorb, however many terms name it
    with pytest.raises(ShardTooLarge, match="references 170 chunks"):
        verify_shard(many, counting_lookup, max_chunk_refs=169)


def test_dedup_index_gets_each_files_first_chunk_and_the_eligible_chunks() -> None:
    eligible = b"\x0e" * 24 + (1024 * 3).to_bytes(8, "little")
    chunks = (*XORB.chunks[:5], replace(XORB.chunks[5], hash=eligible), *XORB.chunks[6:])
    with_eligible = XorbInfo(XORB.hash, chunks)
    stored = {XORB.hash: with_eligible, OTHER.hash: OTHER}
    second = FileTerm(OTHER.hash, OTHER.chunks[2].length, 2, 3)
    files = [honest_file(), ShardFile(b"\x0f" * 32, (second,), (b"\x00" * 32,), None)]
    entries = dedup_index_entries(files, [with_eligible], stored.get)
    assert entries == {
        eligible: XORB.hash,
        XORB.chunks[0].hash: XORB.hash,
        OTHER.chunks[2].hash: OTHER.hash,
    }

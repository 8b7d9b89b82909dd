"""The stock client (hf_xet) uploads to and downloads from a stub CAS made of this library only."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from pathlib import Path

import hf_xet
import numpy as np
import pytest
from xet_cas_stub import CasStub
from xorb_memory import reader_over

from weightyard.xet import (
    CompressionScheme,
    ShardVerificationError,
    chunk_file,
    hash_to_string,
    iter_file_bytes,
    parse_shard,
    parse_xorb,
    serialize_shard,
    string_to_hash,
    verify_shard,
)
from weightyard.xet.shard import Shard, ShardFile

RNG = random.Random(11)
# Random bytes (stored uncompressed), float weights (byte grouping) and text (LZ4): every chunk scheme.
CONTENT = (
    RNG.randbytes(3 << 20)
    + np.linspace(-2, 2, 400_000, dtype=np.float32).tobytes()
    + b"".join(b"tokenizer line %d\n" % i for i in range(60_000))
)


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> hf_xet.XetSession:
    # A fresh cache per test: the client must not dedup against shards cached by an earlier test.
    monkeypatch.setenv("HF_XET_CACHE", str(tmp_path / "client-cache"))
    monkeypatch.setenv("HF_XET_TELEMETRY_ENABLED", "0")
    return hf_xet.XetSession()


@pytest.fixture
def cas() -> Iterator[CasStub]:
    with CasStub() as stub:
        yield stub


def upload(session: hf_xet.XetSession, cas: CasStub, data: bytes) -> bytes:
    with session.new_upload_commit(token_refresh_url=cas.url + "/token") as commit:
        handle = commit.start_upload_bytes(data)
    return string_to_hash(handle.result().xet_info.hash)


def test_client_upload_is_accepted_and_described_exactly(session: hf_xet.XetSession, cas: CasStub) -> None:
    file_hash = upload(session, cas, CONTENT)
    assert cas.state.rejections == []
    entry = cas.state.files[file_hash]
    assert entry.sha256 == hashlib.sha256(CONTENT).digest()
    assert entry.size == len(CONTENT)
    assert chunk_file([CONTENT]).file_hash == file_hash
    schemes = {chunk.scheme for info in cas.state.xorbs.values() for chunk in info.chunks}
    assert CompressionScheme.NONE in schemes
    assert schemes - {CompressionScheme.NONE}


def test_client_shard_round_trips_byte_for_byte(session: hf_xet.XetSession, cas: CasStub) -> None:
    upload(session, cas, CONTENT)
    (body,) = cas.state.shard_bodies
    assert serialize_shard(parse_shard(body)) == body


def test_stored_xorbs_reparse_to_the_same_chunk_tables(session: hf_xet.XetSession, cas: CasStub) -> None:
    upload(session, cas, CONTENT)
    for xorb_hash, body in cas.state.xorb_bodies.items():
        assert parse_xorb(body, xorb_hash) == cas.state.xorbs[xorb_hash]


def test_second_client_with_empty_cache_dedups_through_the_dedup_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session: hf_xet.XetSession, cas: CasStub
) -> None:
    upload(session, cas, CONTENT)
    stored_before = sum(info.raw_len for info in cas.state.xorbs.values())
    edited = CONTENT[: 2 << 20] + b"a small edit" + CONTENT[2 << 20 :]
    monkeypatch.setenv("HF_XET_CACHE", str(tmp_path / "second-machine"))
    edited_hash = upload(hf_xet.XetSession(), cas, edited)
    assert any(r.startswith("GET /cas/v1/chunks/") for r in cas.state.requests)
    new_bytes = sum(info.raw_len for info in cas.state.xorbs.values()) - stored_before
    assert 0 < new_bytes < 300_000
    assert cas.state.files[edited_hash].size == len(edited)


@pytest.mark.parametrize("answer_v2", [True, False])
def test_client_downloads_the_file_through_reconstruction(
    answer_v2: bool, tmp_path: Path, session: hf_xet.XetSession, cas: CasStub
) -> None:
    cas.state.answer_v2_reconstructions = answer_v2
    file_hash = upload(session, cas, CONTENT)
    target = tmp_path / "downloaded.bin"
    with session.new_file_download_group(token_refresh_url=cas.url + "/token") as group:
        group.start_download_file(hf_xet.XetFileInfo(hash_to_string(file_hash), len(CONTENT)), str(target))
    assert target.read_bytes() == CONTENT
    version = "v2" if answer_v2 else "v1"
    assert any(r.startswith(f"GET /cas/{version}/reconstructions/") for r in cas.state.requests)


@pytest.mark.parametrize(("start", "end"), [(0, 1), (1_000_000, 3_500_000), (len(CONTENT) - 5, len(CONTENT))])
def test_client_streams_a_byte_range_through_reconstruction(
    start: int, end: int, session: hf_xet.XetSession, cas: CasStub
) -> None:
    file_hash = upload(session, cas, CONTENT)
    group = session.new_download_stream_group(token_refresh_url=cas.url + "/token")
    info = hf_xet.XetFileInfo(hash_to_string(file_hash), len(CONTENT))
    assert b"".join(group.download_stream(info, start=start, end=end)) == CONTENT[start:end]


SERVER_RANGES = [(0, None), (0, 1), (131_071, 2_000_003), (len(CONTENT) - 1, None)]


@pytest.mark.parametrize(("start", "end"), SERVER_RANGES)
def test_server_streams_client_uploaded_file_from_its_xorbs(
    start: int, end: int | None, session: hf_xet.XetSession, cas: CasStub
) -> None:
    file_hash = upload(session, cas, CONTENT)
    bodies = cas.state.xorb_bodies

    read = reader_over(bodies)
    terms = cas.state.terms(file_hash)
    streamed = b"".join(iter_file_bytes(terms, cas.state.xorbs.get, read, start, end))
    assert streamed == CONTENT[start:end]


def test_client_shard_with_a_forged_verification_entry_is_rejected(
    session: hf_xet.XetSession, cas: CasStub
) -> None:
    upload(session, cas, CONTENT)
    shard = parse_shard(cas.state.shard_bodies[0])
    (entry,) = shard.files
    assert entry.verification is not None
    forged_entry = ShardFile(entry.file_hash, entry.terms, (bytes(32), *entry.verification[1:]), entry.sha256)
    forged = parse_shard(serialize_shard(Shard((forged_entry,), shard.xorbs)))
    with pytest.raises(ShardVerificationError, match="verification hash"):
        verify_shard(forged, cas.state.xorbs.get)


def test_client_commit_with_an_empty_and_a_one_byte_file_is_accepted(
    session: hf_xet.XetSession, cas: CasStub
) -> None:
    with session.new_upload_commit(token_refresh_url=cas.url + "/token") as commit:
        empty = commit.start_upload_bytes(b"")
        tiny = commit.start_upload_bytes(b"x")
    assert cas.state.rejections == []
    assert string_to_hash(empty.result().xet_info.hash) == bytes(32)
    assert cas.state.files[bytes(32)].size == 0
    assert cas.state.files[string_to_hash(tiny.result().xet_info.hash)].size == 1


def test_client_cold_cache_reupload_without_dedup_re_describes_stored_xorbs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session: hf_xet.XetSession, cas: CasStub
) -> None:
    cas.state.global_dedup = False
    first = upload(session, cas, CONTENT)
    monkeypatch.setenv("HF_XET_CACHE", str(tmp_path / "another-machine"))
    second = upload(hf_xet.XetSession(), cas, CONTENT)
    assert first == second
    assert cas.state.rejections == []
    assert len(cas.state.shard_bodies) == 2
    assert parse_shard(cas.state.shard_bodies[1]).xorbs


def test_multi_file_commit_over_64_mib_is_split_into_xorbs_we_accept_and_serve(
    tmp_path: Path, session: hf_xet.XetSession, cas: CasStub
) -> None:
    big = random.Random(12).randbytes(65 << 20)
    files = [big, CONTENT, big[: 5 << 20] + b"tail"]
    with session.new_upload_commit(token_refresh_url=cas.url + "/token") as commit:
        handles = [commit.start_upload_bytes(data) for data in files]
    assert cas.state.rejections == []
    assert len(cas.state.xorbs) >= 2
    fullest = max(cas.state.xorbs.values(), key=lambda info: info.raw_len)
    assert fullest.raw_len > 60 << 20
    assert len(cas.state.xorb_bodies[fullest.hash]) > fullest.raw_len
    (shard,) = [parse_shard(body) for body in cas.state.shard_bodies]
    assert len(shard.files) == 3
    with session.new_file_download_group(token_refresh_url=cas.url + "/token") as group:
        for index, (data, handle) in enumerate(zip(files, handles, strict=True)):
            info = hf_xet.XetFileInfo(handle.result().xet_info.hash, len(data))
            group.start_download_file(info, str(tmp_path / f"file{index}"))
    for index, data in enumerate(files):
        assert (tmp_path / f"file{index}").read_bytes() == data

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import hf_xet
import pytest
from xet_cas_stub import CasStub
from xorb_memory import reader_over

from weightyard.xet import (
    ChunkLocation,
    FilePacker,
    PackedXorb,
    Shard,
    ShardFile,
    XorbInfo,
    hash_to_string,
    iter_file_bytes,
    pack_file,
    parse_xorb,
    shard_xorb,
    string_to_hash,
    verify_shard,
)
from weightyard.xet import xorb as xorb_module

RNG = random.Random(41)
BASE = RNG.randbytes(3 << 20)
EDITED = BASE[: 1 << 20] + b"an inserted paragraph" + BASE[(1 << 20) + 5000 :]


class Store:
    """What the server keeps: xorb bodies, their chunk tables and a full chunk index."""

    def __init__(self) -> None:
        self.bodies: dict[bytes, bytes] = {}
        self.tables: dict[bytes, XorbInfo] = {}
        self.chunks: dict[bytes, ChunkLocation] = {}

    def add(self, packed: list[PackedXorb]) -> int:
        for xorb in packed:
            self.bodies[xorb.info.hash] = xorb.body
            self.tables[xorb.info.hash] = xorb.info
            for index, chunk in enumerate(xorb.info.chunks):
                self.chunks.setdefault(chunk.hash, ChunkLocation(xorb.info.hash, index))
        return sum(x.info.raw_len for x in packed)

    def pack(self, data: bytes) -> tuple[int, ShardFile]:
        packed, entry = pack_file(pieces(data), hashlib.sha256(data).digest(), self.chunks.get)
        return self.add(packed), entry

    def rebuild(self, entry: ShardFile) -> bytes:
        return b"".join(iter_file_bytes(entry.terms, self.tables.get, reader_over(self.bodies)))


def pieces(data: bytes, size: int = 300_000) -> Iterator[bytes]:
    return (data[i : i + size] for i in range(0, len(data), size))


def test_packed_file_has_the_clients_file_hash(client_file_hash: Callable[[bytes], bytes]) -> None:
    store = Store()
    _, entry = store.pack(BASE)
    assert entry.file_hash == client_file_hash(BASE)
    assert entry.sha256 == hashlib.sha256(BASE).digest()


def test_packed_file_verifies_like_an_uploaded_shard_and_rebuilds() -> None:
    store = Store()
    new_bytes, entry = store.pack(BASE)
    assert new_bytes == len(BASE)
    verify_shard(Shard((entry,), tuple(shard_xorb(t) for t in store.tables.values())), store.tables.get)
    for xorb_hash, body in store.bodies.items():
        assert parse_xorb(body, xorb_hash) == store.tables[xorb_hash]
    assert store.rebuild(entry) == BASE


def test_second_version_stores_only_its_new_chunks() -> None:
    store = Store()
    store.pack(BASE)
    new_bytes, entry = store.pack(EDITED)
    assert 0 < new_bytes < 400_000
    verify_shard(Shard((entry,), ()), store.tables.get)
    assert store.rebuild(entry) == EDITED


def test_identical_file_stores_nothing() -> None:
    store = Store()
    _, first = store.pack(BASE)
    new_bytes, second = store.pack(BASE)
    assert new_bytes == 0
    assert second == first


def test_repeated_content_inside_a_file_is_stored_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small xorbs, so that the repeat refers back to xorbs closed earlier in the same file.
    monkeypatch.setattr(xorb_module, "MAX_XORB_RAW_LEN", 1 << 20)
    store = Store()
    data = BASE + BASE[:2_000_000]
    new_bytes, entry = store.pack(data)
    assert len(store.tables) >= 3
    assert all(t.raw_len <= 1 << 20 for t in store.tables.values())
    # Only the chunks around the seam are new: the repeated 2 MB are not stored again.
    assert new_bytes < len(BASE) + 400_000
    verify_shard(Shard((entry,), ()), store.tables.get)
    assert store.rebuild(entry) == data


def test_update_hands_out_full_xorbs_before_the_file_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xorb_module, "MAX_XORB_RAW_LEN", 1 << 20)
    packer = FilePacker()
    early = [x for piece in pieces(BASE) for x in packer.update(piece)]
    late, _ = packer.finish(hashlib.sha256(BASE).digest())
    assert len(early) >= 2
    assert len(late) == 1


def test_client_downloads_a_server_packed_edit_of_its_own_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_XET_CACHE", str(tmp_path / "cache"))
    session = hf_xet.XetSession()
    with CasStub() as cas:
        with session.new_upload_commit(token_refresh_url=cas.url + "/token") as commit:
            handle = commit.start_upload_bytes(BASE)
        uploaded = string_to_hash(handle.result().xet_info.hash)
        store = Store()
        store.bodies, store.tables = cas.state.xorb_bodies, cas.state.xorbs
        for table in cas.state.xorbs.values():
            for index, chunk in enumerate(table.chunks):
                store.chunks[chunk.hash] = ChunkLocation(table.hash, index)
        new_bytes, entry = store.pack(EDITED)
        assert new_bytes < 400_000
        assert entry.file_hash != uploaded
        cas.state.files[entry.file_hash] = entry
        target = tmp_path / "edited.bin"
        with session.new_file_download_group(token_refresh_url=cas.url + "/token") as group:
            group.start_download_file(
                hf_xet.XetFileInfo(hash_to_string(entry.file_hash), len(EDITED)), str(target)
            )
    assert target.read_bytes() == EDITED

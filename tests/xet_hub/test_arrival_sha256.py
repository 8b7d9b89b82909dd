"""The sha256 of an uploader's xorbs hashed while they arrive, in the order their uploads began, so that a
single file's shard needs no second read of the whole file: the digest it gives is the file's own, whatever
order the uploads finish in, and anything that does not fit (another uploader, a file that starts inside a
xorb, a failed upload, a xorb gone from storage) gives no digest, so the shard hashes the file itself. A xorb
whose upload begins once every one before it is hashed hashes its own chunks as they arrive (`began` hands
the upload the running hash): nothing of it is read back."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from pathlib import Path

import pytest

from weightyard.repos import xet_arrivals
from weightyard.repos.content import ContentStore
from weightyard.repos.xet import XorbUpload
from weightyard.repos.xet_arrivals import ArrivalHashes
from weightyard.storage import local
from weightyard.xet import FileTerm, XorbInfo, hash_to_string, serialize_xorb

RNG = random.Random(11)
ALICE, BOB = 1, 2


@pytest.fixture
def store(content_store: ContentStore) -> ContentStore:
    return content_store


# Each stored xorb's chunks, which an upload handed the running hash feeds it (as the parser does).
CHUNKS: dict[bytes, list[bytes]] = {}


def _xorb(store: ContentStore, chunks: list[bytes]) -> XorbInfo:
    body, info = serialize_xorb(chunks)
    store.add_xorb(body, info, None)
    CHUNKS[info.hash] = chunks
    return info


def _whole(info: XorbInfo) -> FileTerm:
    return FileTerm(info.hash, info.raw_len, 0, len(info.chunks))


def _file(store: ContentStore, count: int) -> tuple[list[XorbInfo], bytes]:
    """`count` stored xorbs of a few random chunks each, and the bytes of the file they make in that order."""
    parts = [[RNG.randbytes(RNG.randrange(2000, 9000)) for _ in range(3)] for _ in range(count)]
    return [_xorb(store, chunks) for chunks in parts], b"".join(b"".join(chunks) for chunks in parts)


def _upload(hashes: ArrivalHashes, user: int, began: list[XorbInfo], stored: list[XorbInfo]) -> int:
    """Uploads of `began` begin in that order, then end stored in the order of `stored`; an upload handed the
    running hash feeds it its chunks as they arrive. How many were handed it."""
    feeds = {info.hash: hashes.began(user, info.hash) for info in began}
    for info in stored:
        feed = feeds[info.hash]
        if feed is not None:
            for chunk in CHUNKS[info.hash]:
                feed(memoryview(chunk))
        hashes.stored(user, info.hash, info)
    return sum(feed is not None for feed in feeds.values())


def _one_after_another(hashes: ArrivalHashes, user: int, xorbs: list[XorbInfo]) -> int:
    """Each upload begins once the one before it is stored, as the stock client sends a file's xorbs."""
    return sum(_upload(hashes, user, [info], [info]) for info in xorbs)


def _hashed_ahead(hashes: ArrivalHashes, user: int, count: int) -> None:
    """Wait (bounded) until the background hash has gone through `count` of the user's xorbs."""
    deadline = time.monotonic() + 30
    while len(hashes._sequences[user].states) < count:
        assert time.monotonic() < deadline, "the background hash did not get there"
        time.sleep(0.01)


def test_a_file_uploaded_whole_xorb_by_xorb_gets_its_sha256_whatever_order_uploads_finish(
    store: ContentStore,
) -> None:
    hashes = ArrivalHashes(store)
    xorbs, data = _file(store, 4)
    # All four began before any was stored: only the first takes the running hash, the rest are read back.
    assert _upload(hashes, ALICE, xorbs, list(reversed(xorbs))) == 1
    assert hashes.take(ALICE, [_whole(x) for x in xorbs]) == hashlib.sha256(data).hexdigest()


def test_a_last_xorb_whose_upload_began_early_is_hashed_when_the_shard_comes(store: ContentStore) -> None:
    # The client's short tail xorb often starts its upload before the full one ahead of it.
    hashes = ArrivalHashes(store)
    xorbs, data = _file(store, 4)
    began = [xorbs[0], xorbs[1], xorbs[3], xorbs[2]]
    _upload(hashes, ALICE, began, began)
    assert hashes.take(ALICE, [_whole(x) for x in xorbs]) == hashlib.sha256(data).hexdigest()


def test_a_file_hashed_while_it_arrived_is_not_read_again_at_the_shard(
    store: ContentStore, tmp_path: Path
) -> None:
    hashes = ArrivalHashes(store)
    xorbs, data = _file(store, 3)
    _upload(hashes, ALICE, xorbs, xorbs)
    _hashed_ahead(hashes, ALICE, 3)
    for info in xorbs:  # gone from storage: only a digest made before could still be right
        name = hash_to_string(info.hash)
        (tmp_path / "xorbs" / name[:2] / name).unlink()
    assert hashes.take(ALICE, [_whole(x) for x in xorbs]) == hashlib.sha256(data).hexdigest()


def test_only_the_uploaders_own_sequence_from_its_start_serves_a_file(store: ContentStore) -> None:
    hashes = ArrivalHashes(store)
    xorbs, _ = _file(store, 3)
    _upload(hashes, ALICE, xorbs, xorbs)
    assert hashes.take(BOB, [_whole(x) for x in xorbs]) is None
    # A file that starts at the second xorb, or inside the first, is not the sequence's beginning.
    assert hashes.take(ALICE, [_whole(x) for x in xorbs[1:]]) is None
    _upload(hashes, ALICE, xorbs, xorbs)
    partial = FileTerm(xorbs[0].hash, xorbs[0].chunks[1].length, 1, 2)
    assert hashes.take(ALICE, [partial, _whole(xorbs[1])]) is None


def test_a_shard_ends_the_sequence(store: ContentStore) -> None:
    hashes = ArrivalHashes(store)
    xorbs, data = _file(store, 2)
    _upload(hashes, ALICE, xorbs, xorbs)
    terms = [_whole(x) for x in xorbs]
    assert hashes.take(ALICE, terms) == hashlib.sha256(data).hexdigest()
    assert hashes.take(ALICE, terms) is None
    # The next upload starts a sequence of its own.
    later, later_data = _file(store, 2)
    _upload(hashes, ALICE, later, later)
    assert hashes.take(ALICE, [_whole(x) for x in later]) == hashlib.sha256(later_data).hexdigest()


def test_a_failed_xorb_upload_leaves_the_sequence_serving_nothing(store: ContentStore) -> None:
    hashes = ArrivalHashes(store)
    xorbs, _ = _file(store, 3)
    _upload(hashes, ALICE, xorbs, xorbs[:2])
    hashes.failed(ALICE, xorbs[2].hash)
    assert hashes.take(ALICE, [_whole(x) for x in xorbs[:2]]) is None


def test_a_xorb_missing_when_the_background_reads_it_gives_no_digest(
    store: ContentStore, tmp_path: Path
) -> None:
    hashes = ArrivalHashes(store)
    xorbs, _ = _file(store, 2)
    # The second is read back: its upload began before the first was stored.
    name = hash_to_string(xorbs[1].hash)
    (tmp_path / "xorbs" / name[:2] / name).unlink()
    assert _upload(hashes, ALICE, xorbs, xorbs) == 1
    deadline = time.monotonic() + 30
    while not hashes._sequences[ALICE].broken:
        assert time.monotonic() < deadline, "the background never reached the missing xorb"
        time.sleep(0.01)
    assert hashes.take(ALICE, [_whole(x) for x in xorbs]) is None


def test_xorbs_sent_one_after_another_are_hashed_as_they_arrive_and_never_read_back(
    store: ContentStore, tmp_path: Path
) -> None:
    hashes = ArrivalHashes(store)
    xorbs, data = _file(store, 4)
    for info in xorbs:  # gone from storage: were any read back, the digest would fail
        name = hash_to_string(info.hash)
        (tmp_path / "xorbs" / name[:2] / name).unlink()
    assert _one_after_another(hashes, ALICE, xorbs) == 4
    assert len(hashes._sequences[ALICE].states) == 4, "complete as soon as the last is stored"
    assert hashes.take(ALICE, [_whole(x) for x in xorbs]) == hashlib.sha256(data).hexdigest()


def test_a_tail_xorb_begun_before_the_one_ahead_was_stored_is_read_back_after_it(store: ContentStore) -> None:
    hashes = ArrivalHashes(store)
    xorbs, data = _file(store, 4)
    assert _one_after_another(hashes, ALICE, xorbs[:2]) == 2
    # The third and the short fourth begin together: the third hashes itself, the fourth is read back.
    assert _upload(hashes, ALICE, xorbs[2:], [xorbs[3], xorbs[2]]) == 1
    assert hashes.take(ALICE, [_whole(x) for x in xorbs]) == hashlib.sha256(data).hexdigest()


def test_a_xorb_hashing_itself_that_fails_leaves_the_sequence_serving_nothing(store: ContentStore) -> None:
    hashes = ArrivalHashes(store)
    xorbs, _ = _file(store, 2)
    _one_after_another(hashes, ALICE, xorbs[:1])
    feed = hashes.began(ALICE, xorbs[1].hash)
    assert feed is not None
    feed(CHUNKS[xorbs[1].hash][0])  # part of it arrived, then the upload failed
    hashes.failed(ALICE, xorbs[1].hash)
    assert hashes.take(ALICE, [_whole(x) for x in xorbs]) is None


def test_uploaders_and_xorbs_followed_are_bounded(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(xet_arrivals, "MAX_UPLOADERS", 3)
    monkeypatch.setattr(xet_arrivals, "MAX_XORBS", 2)
    hashes = ArrivalHashes(store)
    xorbs, data = _file(store, 3)
    for user in (10, 11, 12, 13):
        _upload(hashes, user, xorbs[:1], xorbs[:1])
    assert 10 not in hashes._sequences and len(hashes._sequences) == 3
    # A third xorb is past the bound: the sequence stops following and serves no file.
    _upload(hashes, ALICE, xorbs, xorbs)
    assert hashes.take(ALICE, [_whole(x) for x in xorbs]) is None
    _upload(hashes, BOB, xorbs[:2], xorbs[:2])
    two = hashes.take(BOB, [_whole(x) for x in xorbs[:2]])
    assert two == hashlib.sha256(data[: xorbs[0].raw_len + xorbs[1].raw_len]).hexdigest()


def _chunk_hash(eligible: bool) -> bytes:
    """A chunk hash the client would ask about for being eligible (one in 1024), or only as a file's first."""
    raw = bytearray(RNG.randbytes(32))
    raw[24:26] = b"\x00\x00" if eligible else b"\x01\x00"
    return bytes(raw)


def test_a_second_file_started_at_once_stops_the_sequence_before_anything_is_hashed(
    store: ContentStore,
) -> None:
    hashes = ArrivalHashes(store)
    xorbs, _ = _file(store, 2)
    hashes.queried(ALICE, _chunk_hash(eligible=False))
    hashes.queried(ALICE, _chunk_hash(eligible=False))
    _upload(hashes, ALICE, xorbs, xorbs)
    assert hashes._sequences[ALICE].states == []  # nothing hashed for nothing
    assert hashes.take(ALICE, [_whole(x) for x in xorbs]) is None


def test_one_file_asked_about_again_and_eligible_chunks_do_not_stop_the_sequence(store: ContentStore) -> None:
    hashes = ArrivalHashes(store)
    xorbs, data = _file(store, 2)
    first = _chunk_hash(eligible=False)
    for chunk in (first, first, _chunk_hash(eligible=True), _chunk_hash(eligible=True)):
        hashes.queried(ALICE, chunk)
    _upload(hashes, ALICE, xorbs, xorbs)
    assert hashes.take(ALICE, [_whole(x) for x in xorbs]) == hashlib.sha256(data).hexdigest()


def test_an_upload_begun_early_takes_the_hash_over_once_the_xorb_ahead_is_hashed(store: ContentStore) -> None:
    hashes = ArrivalHashes(store)
    ahead_chunks = [RNG.randbytes(5000), b"compressible " * 700]
    late_chunks = [RNG.randbytes(7000), b"text that packs well " * 400, RNG.randbytes(6000), b"z" * 9000]
    ahead_body, ahead = serialize_xorb(ahead_chunks)
    late_body, late = serialize_xorb(late_chunks)
    # Bodies fed as they arrive, not stored: a digest that read either xorb back from storage would fail.
    first = XorbUpload(store, ahead.hash, None, None, None, hashes, ALICE)  # type: ignore[arg-type]
    second = XorbUpload(store, late.hash, None, None, None, hashes, ALICE)  # type: ignore[arg-type]
    try:
        half = len(late_body) // 2
        second.feed(late_body[:1000])
        second.feed(late_body[1000:half])  # the xorb ahead is not hashed yet: nothing to take over
        assert hashes.claim(ALICE, late.hash) is None
        first.feed(ahead_body)
        hashes.stored(ALICE, ahead.hash, ahead)
        second.feed(late_body[half:])  # takes over: reads back what it has, hashes the rest as it comes
        hashes.stored(ALICE, late.hash, late)
        assert len(hashes._sequences[ALICE].states) == 2, "complete as soon as the last is stored"
        data = b"".join(ahead_chunks + late_chunks)
        assert hashes.take(ALICE, [_whole(ahead), _whole(late)]) == hashlib.sha256(data).hexdigest()
    finally:
        first._scratch.discard()
        second._scratch.discard()


def _full_and_tail(store: ContentStore, monkeypatch: pytest.MonkeyPatch) -> tuple[list[XorbInfo], XorbInfo]:
    """Three xorbs the hub takes for full (as 64 MiB ones are; the bound is lowered) and a short tail."""
    monkeypatch.setattr(xet_arrivals, "FULL_XORB_RAW_LEN", 5000)
    full = [_xorb(store, [RNG.randbytes(3000), RNG.randbytes(3000)]) for _ in range(3)]
    return full, _xorb(store, [RNG.randbytes(1000)])


def _hashed_before_the_shard(hashes: ArrivalHashes, tmp_path: Path, xorbs: list[XorbInfo]) -> None:
    """Once the background has hashed them all, the xorbs go from storage, and the shard of the file they make
    in that order still gets its sha256: only a digest made before the shard can be right."""
    data = b"".join(b"".join(CHUNKS[x.hash]) for x in xorbs)
    _hashed_ahead(hashes, ALICE, len(xorbs))
    for info in xorbs:
        name = hash_to_string(info.hash)
        (tmp_path / "xorbs" / name[:2] / name).unlink()
    assert hashes.take(ALICE, [_whole(x) for x in xorbs]) == hashlib.sha256(data).hexdigest()


def test_a_tail_stored_before_the_full_xorb_ahead_of_it_is_moved_behind_it_and_the_shard_hashes_nothing(
    store: ContentStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full, tail = _full_and_tail(store, monkeypatch)
    hashes = ArrivalHashes(store)
    _one_after_another(hashes, ALICE, full[:1])
    # The short tail begins before the last full xorb, and is stored while that one still arrives.
    began = [full[1], tail, full[2]]
    assert _upload(hashes, ALICE, began, began) == 1
    _hashed_before_the_shard(hashes, tmp_path, [*full, tail])


def test_a_xorb_begun_after_a_stored_tail_goes_ahead_of_it(
    store: ContentStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full, tail = _full_and_tail(store, monkeypatch)
    hashes = ArrivalHashes(store)
    _one_after_another(hashes, ALICE, full[:1])
    feed = hashes.began(ALICE, full[1].hash)
    assert feed is not None
    assert hashes.began(ALICE, tail.hash) is None
    hashes.stored(ALICE, tail.hash, tail)  # stored before the last full xorb begins
    assert hashes.began(ALICE, full[2].hash) is None
    for chunk in CHUNKS[full[1].hash]:
        feed(chunk)
    hashes.stored(ALICE, full[1].hash, full[1])
    hashes.stored(ALICE, full[2].hash, full[2])
    _hashed_before_the_shard(hashes, tmp_path, [*full, tail])


def test_a_tail_that_hashed_itself_stays_where_it_began(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every xorb before it was hashed when it began: it hashed itself as it arrived, so it cannot move; a
    # full xorb begun after it is then hashed at the shard.
    full, tail = _full_and_tail(store, monkeypatch)
    data = b"".join(b"".join(CHUNKS[x.hash]) for x in [*full, tail])
    hashes = ArrivalHashes(store)
    _one_after_another(hashes, ALICE, full[:2])
    assert _upload(hashes, ALICE, [tail, full[2]], [tail, full[2]]) == 1
    assert [slot.xorb_hash for slot in hashes._sequences[ALICE].slots][-2:] == [tail.hash, full[2].hash]
    assert hashes.take(ALICE, [_whole(x) for x in [*full, tail]]) == hashlib.sha256(data).hexdigest()


def _held_writes(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Disk writes of large batches wait (bounded) until the returned event is set."""
    gate = threading.Event()
    write = local._AlignedWrites.pwrite_all

    def held(self: local._AlignedWrites, data: bytes | memoryview, position: int) -> None:
        if len(data) >= local._OVERLAP_FROM:  # a small one is written by the caller's own thread
            gate.wait(30)
        write(self, data, position)

    monkeypatch.setattr(local._AlignedWrites, "pwrite_all", held)
    return gate


def test_a_xorb_batch_is_checked_and_hashed_while_the_disk_still_writes_the_ones_before(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _held_writes(monkeypatch)
    chunks = [RNG.randbytes(60_000) for _ in range(12)]
    body, info = serialize_xorb(chunks)
    hashes = ArrivalHashes(store)
    upload = XorbUpload(store, info.hash, None, None, None, hashes, ALICE)  # type: ignore[arg-type]
    try:
        half = len(body) // 2
        first = upload.feed(body[:half])
        second = upload.feed(body[half:])  # not held up by the first batch's write
        assert not first.done() and not second.done(), "each batch returns while its write is under way"
        assert len(upload._parser.chunks) == len(chunks), "every chunk checked meanwhile"
        gate.set()
        first.result()
        second.result()
        assert b"".join(bytes(v) for v in upload._scratch.read_back([(0, len(body))])) == body
    finally:
        gate.set()
        upload.abort()


def test_an_upload_taking_the_hash_over_waits_for_its_writes_before_reading_them_back(
    store: ContentStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ahead_chunks = [RNG.randbytes(5000)]
    late_chunks = [RNG.randbytes(60_000) for _ in range(10)]
    ahead_body, ahead = serialize_xorb(ahead_chunks)
    late_body, late = serialize_xorb(late_chunks)
    hashes = ArrivalHashes(store)
    first = XorbUpload(store, ahead.hash, None, None, None, hashes, ALICE)  # type: ignore[arg-type]
    second = XorbUpload(store, late.hash, None, None, None, hashes, ALICE)  # type: ignore[arg-type]
    gate = _held_writes(monkeypatch)
    try:
        half = len(late_body) // 2
        written = second.feed(late_body[:half])  # its write held: the bytes are not on the disk yet
        first.feed(ahead_body)  # small: written at once, and hashed as it arrives
        hashes.stored(ALICE, ahead.hash, ahead)
        assert not written.done()
        threading.Timer(0.2, gate.set).start()
        # Takes the hash over: what it reads back must be what was written, so it waits for the write.
        second.feed(late_body[half:])
        hashes.stored(ALICE, late.hash, late)
        data = b"".join(ahead_chunks + late_chunks)
        assert hashes.take(ALICE, [_whole(ahead), _whole(late)]) == hashlib.sha256(data).hexdigest()
    finally:
        gate.set()
        first.abort()
        second.abort()

"""The `ObjectStore` contract (storage/base.py), run against every implementation `object_store` provides."""

from __future__ import annotations

import hashlib
import os
import threading
import time

import httpx
import pytest

from weightyard.errors import BlobNotFound, ContentMismatch, NotFound
from weightyard.storage import BLOBS, XORBS, BlobInfo, ObjectStore

DATA = os.urandom(300_000)
SHA = hashlib.sha256(DATA).hexdigest()
XORB_KEY = hashlib.sha256(b"xorb").hexdigest()


def _put_blob(store: ObjectStore, data: bytes = DATA, sha256: str | None = None) -> bool:
    writer = store.blob_writer(sha256)
    for start in range(0, len(data), 65_536):
        writer.write(data[start : start + 65_536])
    blob = writer.seal(expected_sha256=hashlib.sha256(data).hexdigest(), expected_size=len(data))
    assert blob == BlobInfo(hashlib.sha256(data).hexdigest(), len(data))
    return writer.publish()


def _read(store: ObjectStore, key: str, start: int, end: int, piece: int = 4096, ns: str = BLOBS) -> bytes:
    pieces = list(store.read(ns, key, start, end, piece))  # type: ignore[arg-type]
    assert all(len(p) <= piece for p in pieces)
    return b"".join(pieces)


def test_a_published_blob_reads_back_whole_in_ranges_and_as_a_stream(object_store: ObjectStore) -> None:
    assert object_store.size(BLOBS, SHA) is None
    assert _put_blob(object_store, sha256=SHA) is True
    assert object_store.size(BLOBS, SHA) == len(DATA)
    assert _read(object_store, SHA, 0, len(DATA), 65_536) == DATA
    assert _read(object_store, SHA, 12_345, 200_001) == DATA[12_345:200_001]
    assert _read(object_store, SHA, 299_000, 10**9) == DATA[299_000:], "a range past the end ends early"
    with object_store.open(BLOBS, SHA) as handle:
        handle.seek(100)
        assert handle.read(50) == DATA[100:150]
    buffers = [memoryview(bytearray(1000)), memoryview(bytearray(3000))]
    assert object_store.read_into(BLOBS, SHA, 7, buffers) == 4000
    assert b"".join(bytes(b) for b in buffers) == DATA[7:4007]


def test_writing_existing_content_again_is_success_and_changes_nothing(object_store: ObjectStore) -> None:
    assert _put_blob(object_store) is True
    assert _put_blob(object_store) is False
    assert [(o.key, o.size) for o in object_store.list(BLOBS)] == [(SHA, len(DATA))]
    assert _read(object_store, SHA, 0, len(DATA)) == DATA


def test_concurrent_writers_of_identical_content_all_succeed_and_one_creates(
    object_store: ObjectStore,
) -> None:
    data = os.urandom(2_000_000)
    results: list[bool] = []
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            results.append(_put_blob(object_store, data))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(results) == [False] * 5 + [True]
    sha = hashlib.sha256(data).hexdigest()
    assert _read(object_store, sha, 0, len(data), 1 << 20) == data


@pytest.mark.parametrize(
    ("sha256", "size"),
    [(hashlib.sha256(b"other").hexdigest(), None), (None, len(DATA) + 1), (SHA, len(DATA) - 1)],
    ids=["wrong-sha256", "too-few-bytes", "too-many-bytes"],
)
def test_a_mismatch_leaves_nothing_visible(
    object_store: ObjectStore, sha256: str | None, size: int | None
) -> None:
    writer = object_store.blob_writer(sha256)
    writer.write(DATA)
    with pytest.raises(ContentMismatch):
        writer.seal(expected_sha256=sha256, expected_size=size)
    writer.abort()
    assert list(object_store.list(BLOBS)) == []
    assert object_store.size(BLOBS, SHA) is None
    assert list(object_store.list_scratch()) == []


def test_nothing_is_visible_before_publish_and_an_abort_leaves_nothing(object_store: ObjectStore) -> None:
    writer = object_store.blob_writer()
    writer.write(DATA)
    writer.seal()
    assert object_store.size(BLOBS, SHA) is None
    writer.abort()
    writer.abort()
    assert list(object_store.list(BLOBS)) == []
    assert list(object_store.list_scratch()) == []


def test_absent_objects_read_as_not_found_and_delete_as_nothing(object_store: ObjectStore) -> None:
    with pytest.raises(BlobNotFound):
        b"".join(object_store.read(BLOBS, SHA, 0, 10, 10))
    with pytest.raises(BlobNotFound):
        object_store.open(XORBS, XORB_KEY)
    with pytest.raises(BlobNotFound):
        object_store.read_into(XORBS, XORB_KEY, 0, [memoryview(bytearray(4))])
    object_store.delete(BLOBS, SHA)
    object_store.delete(XORBS, XORB_KEY)
    assert object_store.size(XORBS, "not-a-key") is None


def test_xorbs_are_put_from_scratch_files_or_bytes_once(object_store: ObjectStore) -> None:
    body = os.urandom(100_000)
    scratch = object_store.scratch()
    scratch.write(body[:40_000])
    scratch.sync()
    scratch.write(body[40_000:])
    assert scratch.size == len(body)
    assert object_store.put_xorb(XORB_KEY, scratch) is True
    scratch.discard()
    assert list(object_store.list_scratch()) == [], "the store took the scratch file over"
    other = hashlib.sha256(b"second").hexdigest()
    assert object_store.put_xorb(other, b"abc" * 1000) is True
    assert object_store.put_xorb(other, b"abc" * 1000) is False
    assert object_store.size(XORBS, XORB_KEY) == len(body)
    assert _read(object_store, XORB_KEY, 1000, 90_000, ns=XORBS) == body[1000:90_000]
    buffers = [memoryview(bytearray(10)) for _ in range(5)]
    assert object_store.read_into(XORBS, XORB_KEY, 99_980, buffers) == 20, "the xorb ends first"
    assert sorted(o.key for o in object_store.list(XORBS)) == sorted([XORB_KEY, other])
    assert list(object_store.list(BLOBS)) == [], "namespaces are apart"
    object_store.delete(XORBS, other)
    assert [o.key for o in object_store.list(XORBS)] == [XORB_KEY]


def test_listing_reports_keys_in_order_with_size_and_mtime_and_filters_by_prefix(
    object_store: ObjectStore,
) -> None:
    blobs = [os.urandom(n) for n in (10, 2000, 30_000, 1)]
    for data in blobs:
        _put_blob(object_store, data)
    listed = list(object_store.list(BLOBS))
    expected = sorted((hashlib.sha256(d).hexdigest(), len(d)) for d in blobs)
    assert [(o.key, o.size) for o in listed] == expected
    assert all(abs(o.mtime - time.time()) < 3600 for o in listed)
    first = expected[0][0]
    for prefix in (first[:1], first[:2], first[:3], first[:5], first):
        keys = [o.key for o in object_store.list(BLOBS, prefix)]
        assert keys == [k for k, _ in expected if k.startswith(prefix)]


def test_scratch_leftovers_are_listed_and_removed(object_store: ObjectStore) -> None:
    scratch = object_store.scratch()
    scratch.write(b"x" * 100)
    scratch.sync()
    (leftover,) = object_store.list_scratch()
    assert leftover.size == 100
    object_store.delete_scratch(leftover.key)
    assert list(object_store.list_scratch()) == []
    scratch.discard()


def _stage(store: ObjectStore, data: bytes, part_size: int, upload_id: str = "u1") -> None:
    upload = store.open_upload(upload_id, hashlib.sha256(data).hexdigest(), len(data), part_size)
    for number in reversed(range(1, upload.parts + 1)):
        writer = upload.part_writer(number)
        start = (number - 1) * part_size
        writer.write(data[start : start + part_size])
        writer.finish()


def test_a_staged_upload_assembles_parts_in_any_order_into_the_blob(object_store: ObjectStore) -> None:
    upload = object_store.open_upload("u1", SHA, len(DATA), 70_000)
    assert upload.parts == 5 and upload.missing_parts() == [1, 2, 3, 4, 5]
    _stage(object_store, DATA, 70_000)
    assert upload.missing_parts() == []
    assert upload.digest() == SHA
    assert b"".join(upload.pieces(65_536)) == DATA
    assert object_store.size(BLOBS, SHA) is None, "nothing is visible before completion"
    assert [(u.key, u.size >= len(DATA)) for u in object_store.list_uploads()] == [("u1", True)]
    upload.seal()
    assert upload.publish(BlobInfo(SHA, len(DATA))) is True
    assert _read(object_store, SHA, 0, len(DATA), 1 << 20) == DATA
    assert list(object_store.list_uploads()) == []


def test_staged_parts_are_seen_by_a_reopened_upload_and_a_part_sent_again_replaces_it(
    object_store: ObjectStore,
) -> None:
    _stage(object_store, DATA, 100_000)
    again = object_store.open_upload("u1", SHA, len(DATA), 100_000)
    assert again.missing_parts() == []
    writer = again.part_writer(2)
    writer.write(b"\0" * 100_000)
    writer.finish()
    assert again.digest() != SHA
    writer = again.part_writer(2)
    writer.write(DATA[100_000:200_000])
    writer.finish()
    assert again.digest() == SHA


def test_a_part_of_the_wrong_size_does_not_count(object_store: ObjectStore) -> None:
    upload = object_store.open_upload("u2", SHA, len(DATA), 100_000)
    writer = upload.part_writer(1)
    writer.write(DATA[:99_999])
    with pytest.raises(ContentMismatch):
        writer.finish()
    writer = upload.part_writer(3)
    with pytest.raises(ContentMismatch):
        writer.write(DATA[:100_001])
    writer.abort()
    assert upload.missing_parts() == [1, 2, 3]


def test_a_discarded_upload_is_gone_and_takes_no_more_parts(object_store: ObjectStore) -> None:
    _stage(object_store, DATA, 100_000, "u3")
    upload = object_store.open_upload("u3", SHA, len(DATA), 100_000)
    writer = upload.part_writer(1)
    writer.write(DATA[:100_000])
    upload.discard()
    with pytest.raises(NotFound):
        writer.finish()
    assert list(object_store.list_uploads()) == []
    object_store.delete_upload("u3")


def test_presigned_urls_are_optional_and_read_the_object_when_given(object_store: ObjectStore) -> None:
    _put_blob(object_store)
    url = object_store.presign(BLOBS, SHA, 60)
    if url is not None:
        assert httpx.get(url).content == DATA
    assert object_store.presign_part("u1", 1, 60) is None or isinstance(
        object_store.presign_part("u1", 1, 60), str
    )


def test_a_store_of_local_files_hands_one_out_open_and_any_other_answers_none(
    object_store: ObjectStore,
) -> None:
    _put_blob(object_store)
    handle = object_store.open_file(BLOBS, SHA)
    if not object_store.local_files:
        assert handle is None, "a remote store's objects are streamed"
        return
    assert handle is not None
    with handle:
        assert os.pread(handle.fileno(), 1000, 5000) == DATA[5000:6000]
    with pytest.raises(BlobNotFound):
        object_store.open_file(BLOBS, "0" * 64)


def test_completion_waits_for_no_part_and_takes_no_part_once_sealed(object_store: ObjectStore) -> None:
    _stage(object_store, DATA, 100_000, "u4")
    upload = object_store.open_upload("u4", SHA, len(DATA), 100_000)
    writer = upload.part_writer(2)
    writer.write(DATA[100_000:150_000])
    with pytest.raises(ContentMismatch):
        upload.seal()
    writer.write(DATA[150_000:200_000])
    writer.finish()
    upload.seal()
    with pytest.raises(NotFound):
        upload.part_writer(3)
    assert upload.digest() == SHA
    assert upload.publish(BlobInfo(SHA, len(DATA))) is True

"""The S3 blob store against real servers: SeaweedFS (validates checksums, honours conditional writes) and,
for error paths, moto. Each test has a prefix of its own in the session's bucket."""

from __future__ import annotations

import hashlib
import os
import threading
from datetime import timedelta

import httpx
import pytest
from tests.s3 import REGION, credentials_env, fresh_prefix

from weightyard.errors import (
    BadRequest,
    BlobNotFound,
    ContentMismatch,
    StorageUnavailable,
    StoredContentDamaged,
    StoredContentMissing,
)
from weightyard.storage.base import BlobInfo
from weightyard.storage.s3 import MIN_PART_SIZE, S3BlobStore, S3Location

PART = MIN_PART_SIZE


@pytest.fixture
def store(s3_url: str) -> S3BlobStore:
    return S3BlobStore(S3Location.parse(s3_url), part_size=PART)


@pytest.fixture
def moto_store(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3BlobStore:
    for name, value in credentials_env().items():
        monkeypatch.setenv(name, value)
    store = S3BlobStore(S3Location("moto-bucket", fresh_prefix(), moto_endpoint, REGION), part_size=PART)
    store._client.create_bucket(Bucket="moto-bucket")
    return store


def _objects(store: S3BlobStore) -> list[str]:
    return [key for key, _ in store.list_objects(store.location.key() + "/")]


def _uploads(store: S3BlobStore) -> list[str]:
    answer = store._client.list_multipart_uploads(
        Bucket=store.location.bucket, Prefix=store.location.key() + "/"
    )
    return [upload["Key"] for upload in answer.get("Uploads", [])]


def _write(store: S3BlobStore, data: bytes, sha256: str | None = None, piece: int = 1 << 20) -> BlobInfo:
    writer = store.writer(sha256, len(data) if sha256 else None)
    for offset in range(0, len(data), piece):
        writer.write(data[offset : offset + piece])
    return writer.commit()


def test_url_names_bucket_prefix_endpoint_and_region() -> None:
    location = S3Location.parse("s3://models/team/hub?endpoint_url=http://127.0.0.1:9000&region=eu-west-1")
    assert location == S3Location("models", "team/hub", "http://127.0.0.1:9000", "eu-west-1")
    assert location.key("blobs", "ab", "x") == "team/hub/blobs/ab/x"
    assert S3Location.parse("s3://models").key("xorbs", "y") == "xorbs/y"
    with pytest.raises(BadRequest, match="unknown s3:// URL option"):
        S3Location.parse("s3://models/p?endpoint=http://127.0.0.1:9000")
    with pytest.raises(BadRequest):
        S3Location.parse("s3:///nobucket")


def test_small_blob_is_one_object_at_its_content_address_with_ranges_and_head(store: S3BlobStore) -> None:
    data = b"weights " * 1000
    sha = hashlib.sha256(data).hexdigest()
    assert _write(store, data) == BlobInfo(sha, len(data))
    assert _objects(store) == [f"{store.location.prefix}/blobs/{sha[:2]}/{sha}"]
    assert store.exists(sha)
    assert store.size(sha) == len(data)
    store.check_stored(sha, len(data))
    assert b"".join(store.iter_range(sha, 0, len(data), 1 << 20)) == data
    assert b"".join(store.iter_range(sha, 5, 17, 1 << 20)) == data[5:17]
    pieces = list(store.iter_range(sha, 0, len(data), 1000))
    assert max(len(piece) for piece in pieces) <= 1000
    assert b"".join(pieces) == data
    with store.open(sha) as handle:
        handle.seek(100)
        assert handle.read(50) == data[100:150]
    with pytest.raises(StoredContentDamaged):
        store.check_stored(sha, len(data) + 1)
    store.delete(sha)
    store.delete(sha)  # idempotent
    assert not store.exists(sha)
    with pytest.raises(StoredContentMissing):
        store.check_stored(sha, len(data))
    with pytest.raises(BlobNotFound):
        store.size(sha)
    with pytest.raises(BlobNotFound):
        b"".join(store.iter_range(sha, 0, 10, 1 << 20))


@pytest.mark.parametrize("announced", [True, False], ids=["sha-announced", "sha-unknown"])
def test_large_blob_streams_in_parts_and_leaves_only_the_blob(store: S3BlobStore, announced: bool) -> None:
    data = os.urandom(2 * PART + 12345)
    sha = hashlib.sha256(data).hexdigest()
    assert _write(store, data, sha if announced else None) == BlobInfo(sha, len(data))
    assert _objects(store) == [store.blob_key(sha)]
    assert _uploads(store) == []
    assert b"".join(store.iter_range(sha, 0, len(data), 1 << 20)) == data
    assert b"".join(store.iter_range(sha, PART - 3, PART + 3, 1 << 20)) == data[PART - 3 : PART + 3]
    assert list(store.list_blobs()) == [BlobInfo(sha, len(data))]


@pytest.mark.parametrize("size", [1000, 2 * PART + 1], ids=["one-put", "multipart"])
def test_mismatched_content_leaves_no_object_and_no_upload(store: S3BlobStore, size: int) -> None:
    data = os.urandom(size)
    wrong = hashlib.sha256(b"something else").hexdigest()
    with pytest.raises(ContentMismatch):
        _write(store, data, wrong)
    writer = store.writer()
    writer.write(data)
    with pytest.raises(ContentMismatch):
        writer.commit(expected_size=size - 1)
    assert _objects(store) == []
    assert _uploads(store) == []


def _race(store: S3BlobStore, data: bytes, writers: int) -> tuple[list[BlobInfo | BaseException], list[bool]]:
    """`writers` threads write `data` (announced) and commit at the same moment."""
    sha = hashlib.sha256(data).hexdigest()
    barrier = threading.Barrier(writers)
    results: list[BlobInfo | BaseException] = []
    created: list[bool] = []

    def upload() -> None:
        writer = store.writer(sha, len(data))
        writer.write(data[:-1])
        barrier.wait(30)
        try:
            writer.write(data[-1:])
            results.append(writer.commit())
            created.append(writer.created)
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results, created


def test_eight_identical_concurrent_writers_all_succeed_and_exactly_one_creates(store: S3BlobStore) -> None:
    data = os.urandom(64 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    results, created = _race(store, data, 8)
    assert results == [BlobInfo(sha, len(data))] * 8
    assert sorted(created) == [False] * 7 + [True]
    assert _objects(store) == [store.blob_key(sha)]
    assert b"".join(store.iter_range(sha, 0, len(data), 1 << 20)) == data


def test_concurrent_identical_multipart_writers_all_succeed_with_one_object(store: S3BlobStore) -> None:
    data = os.urandom(PART + 4321)
    sha = hashlib.sha256(data).hexdigest()
    results, created = _race(store, data, 3)
    assert results == [BlobInfo(sha, len(data))] * 3
    # SeaweedFS's conditional CompleteMultipartUpload is not atomic under this race (several may "create"
    # the object: identical bytes, so harmless); a writer that comes after one completed never creates it.
    assert True in created
    late = store.writer(sha, len(data))
    late.write(data)
    assert late.commit() == BlobInfo(sha, len(data))
    assert not late.created
    assert _objects(store) == [store.blob_key(sha)]
    assert _uploads(store) == []
    assert b"".join(store.iter_range(sha, 0, len(data), 1 << 20)) == data


def test_existing_object_of_another_size_is_reported_damaged(store: S3BlobStore) -> None:
    data = b"honest content"
    sha = hashlib.sha256(data).hexdigest()
    store.put_object(store.blob_key(sha), b"short", hashlib.sha256(b"short").hexdigest())
    with pytest.raises(StoredContentDamaged):
        _write(store, data)


def test_bytes_that_do_not_match_their_checksum_are_refused_by_the_server(store: S3BlobStore) -> None:
    # What a byte damaged on the way looks like to SeaweedFS: content and x-amz-checksum-sha256 disagree.
    key = store.blob_key(hashlib.sha256(b"x").hexdigest())
    with pytest.raises(ContentMismatch):
        store.put_object(key, b"y", hashlib.sha256(b"x").hexdigest())
    assert store.object_size(key) is None


def test_staged_upload_is_verified_before_it_becomes_visible(store: S3BlobStore) -> None:
    data = os.urandom(PART + 999)
    sha = hashlib.sha256(data).hexdigest()
    upload = store.start_upload()
    # part 2 first, and one part sent through a presigned URL as a client would
    store.put_part(upload, 2, data[PART:])
    answer = httpx.put(store.presign_part(upload, 1, timedelta(minutes=5)), content=data[:PART])
    assert answer.status_code == 200
    assert store.uploaded_parts(upload) == [(1, PART), (2, 999)]
    assert not store.exists(sha)
    assert store.complete_upload(upload, sha, len(data)) == BlobInfo(sha, len(data))
    assert _objects(store) == [store.blob_key(sha)]
    assert _uploads(store) == []
    assert b"".join(store.iter_range(sha, 0, len(data), 1 << 20)) == data


def test_staged_upload_of_other_content_leaves_nothing(store: S3BlobStore) -> None:
    data = os.urandom(PART + 5)
    upload = store.start_upload()
    store.put_part(upload, 1, data[:PART])
    store.put_part(upload, 2, data[PART:])
    wrong = hashlib.sha256(b"not it").hexdigest()
    with pytest.raises(ContentMismatch, match="sha256"):
        store.complete_upload(upload, wrong, len(data))
    assert _objects(store) == []
    assert _uploads(store) == []


def test_staged_upload_with_missing_part_or_wrong_size_is_refused(store: S3BlobStore) -> None:
    upload = store.start_upload()
    store.put_part(upload, 2, b"tail")
    with pytest.raises(ContentMismatch, match="parts"):
        store.complete_upload(upload, hashlib.sha256(b"tail").hexdigest(), 4)
    upload = store.start_upload()
    store.put_part(upload, 1, b"tail")
    with pytest.raises(ContentMismatch, match="bytes"):
        store.complete_upload(upload, hashlib.sha256(b"tail").hexdigest(), 5)
    assert _objects(store) == []
    assert _uploads(store) == []


@pytest.mark.parametrize("server", ["seaweedfs", "moto"])
def test_parts_under_five_mib_are_refused_at_completion(server: str, request: pytest.FixtureRequest) -> None:
    store: S3BlobStore = request.getfixturevalue("store" if server == "seaweedfs" else "moto_store")
    data = os.urandom(1 << 20)
    upload = store.start_upload()
    store.put_part(upload, 1, data[:1000])
    store.put_part(upload, 2, data[1000:])
    with pytest.raises(ContentMismatch, match="at least"):
        store.complete_upload(upload, hashlib.sha256(data).hexdigest(), len(data))
    assert _objects(store) == []
    assert _uploads(store) == []


def test_stale_uploads_are_aborted_and_recent_ones_kept(store: S3BlobStore) -> None:
    writer = store.writer()
    writer.write(os.urandom(PART + 1))  # a writer that dies here leaves its upload behind
    assert len(_uploads(store)) == 1
    assert store.abort_stale_uploads(timedelta(hours=1)) == 0
    assert store.abort_stale_uploads(timedelta(seconds=-60)) == 1
    assert _uploads(store) == []


def test_presigned_get_serves_ranges_without_credentials(store: S3BlobStore) -> None:
    data = os.urandom(3000)
    blob = _write(store, data)
    url = store.presign_get(blob.sha256, timedelta(minutes=5))
    assert httpx.get(url).content == data
    answer = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert answer.status_code == 206
    assert answer.content == data[10:20]
    assert httpx.get(store.location.endpoint_url + "/" + store.blob_key(blob.sha256)).status_code in (
        200,
        403,
    )


def test_concurrent_identical_writers_on_moto_also_make_one_object(moto_store: S3BlobStore) -> None:
    data = os.urandom(PART + 10)
    sha = hashlib.sha256(data).hexdigest()
    first, second = moto_store.writer(sha, len(data)), moto_store.writer(sha, len(data))
    first.write(data)
    second.write(data)
    assert first.commit() == second.commit() == BlobInfo(sha, len(data))
    assert (first.created, second.created) == (True, False)
    assert _objects(moto_store) == [moto_store.blob_key(sha)]
    assert _uploads(moto_store) == []


def test_missing_bucket_is_storage_unavailable(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in credentials_env().items():
        monkeypatch.setenv(name, value)
    store = S3BlobStore(S3Location("no-such-bucket", "p", moto_endpoint, REGION))
    with pytest.raises(StorageUnavailable, match="NoSuchBucket"):
        _write(store, b"data")
    with pytest.raises(StorageUnavailable):
        list(store.list_blobs())


def test_store_that_does_not_answer_is_storage_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in credentials_env().items():
        monkeypatch.setenv(name, value)
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = S3BlobStore(S3Location("bucket", "p", f"http://127.0.0.1:{port}", REGION))
    with pytest.raises(StorageUnavailable):
        _write(store, b"data")

"""The S3 blob store against real servers: SeaweedFS (validates checksums, honours conditional writes) and,
for error paths, moto. Each test has a prefix of its own in the session's bucket."""

from __future__ import annotations

import hashlib
import mmap
import os
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from tests.page_cache import cached_pages
from tests.s3 import REGION, credentials_env, fresh_prefix

from weightyard.errors import BadRequest, ContentMismatch, StorageUnavailable, StoredContentDamaged
from weightyard.storage import BLOBS, BlobInfo, open_object_store
from weightyard.storage.s3 import MIN_PART_SIZE, S3Location, S3ObjectStore

PART = MIN_PART_SIZE


@pytest.fixture
def store(s3_url: str, tmp_path: Path) -> S3ObjectStore:
    return S3ObjectStore(S3Location.parse(s3_url), tmp_path, part_size=PART)


@pytest.fixture
def moto_store(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3ObjectStore:
    for name, value in credentials_env().items():
        monkeypatch.setenv(name, value)
    location = S3Location("moto-bucket", fresh_prefix(), moto_endpoint, REGION)
    store = S3ObjectStore(location, tmp_path, part_size=PART)
    store._client.create_bucket(Bucket="moto-bucket")
    return store


def _objects(store: S3ObjectStore) -> list[str]:
    return [key for key, _, _ in store.list_objects(store.location.key() + "/")]


def _uploads(store: S3ObjectStore) -> list[str]:
    answer = store._client.list_multipart_uploads(
        Bucket=store.location.bucket, Prefix=store.location.key() + "/"
    )
    return [upload["Key"] for upload in answer.get("Uploads", [])]


def _write(store: S3ObjectStore, data: bytes, sha256: str | None = None) -> tuple[BlobInfo, bool]:
    writer = store.blob_writer(sha256)
    for offset in range(0, len(data), 1 << 20):
        writer.write(data[offset : offset + (1 << 20)])
    blob = writer.seal(sha256, len(data))
    return blob, writer.publish()


def _read(store: S3ObjectStore, sha: str, start: int = 0, end: int = 1 << 40) -> bytes:
    return b"".join(store.read(BLOBS, sha, start, end, 1 << 20))


def test_url_names_bucket_prefix_endpoint_and_region() -> None:
    location = S3Location.parse("s3://models/team/hub?endpoint_url=http://127.0.0.1:9000&region=eu-west-1")
    assert location == S3Location("models", "team/hub", "http://127.0.0.1:9000", "eu-west-1")
    assert location.key("blobs", "ab", "x") == "team/hub/blobs/ab/x"
    assert S3Location.parse("s3://models").key("xorbs", "y") == "xorbs/y"
    with pytest.raises(BadRequest, match="unknown s3:// URL option"):
        S3Location.parse("s3://models/p?endpoint=http://127.0.0.1:9000")
    with pytest.raises(BadRequest):
        S3Location.parse("s3:///nobucket")


def test_a_small_blob_is_one_object_at_its_content_address(store: S3ObjectStore) -> None:
    data = b"weights " * 1000
    sha = hashlib.sha256(data).hexdigest()
    assert _write(store, data) == (BlobInfo(sha, len(data)), True)
    assert _objects(store) == [f"{store.location.prefix}/blobs/{sha[:2]}/{sha}"]
    assert _uploads(store) == []
    pieces = list(store.read(BLOBS, sha, 0, len(data), 1000))
    assert max(len(piece) for piece in pieces) <= 1000
    assert b"".join(pieces) == data
    assert _read(store, sha, len(data), len(data) + 10) == b"", "a range from the end is empty"


@pytest.mark.parametrize("announced", [True, False], ids=["sha-announced", "sha-unknown"])
def test_a_large_blob_streams_in_parts_and_leaves_only_the_blob(
    store: S3ObjectStore, announced: bool
) -> None:
    data = os.urandom(2 * PART + 12345)
    sha = hashlib.sha256(data).hexdigest()
    assert _write(store, data, sha if announced else None) == (BlobInfo(sha, len(data)), True)
    assert _objects(store) == [store.object_key(BLOBS, sha)]
    assert _uploads(store) == []
    assert _read(store, sha) == data
    assert _read(store, sha, PART - 3, PART + 3) == data[PART - 3 : PART + 3]


def test_a_large_staging_object_is_copied_into_place_in_ranges(
    store: S3ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # S3 copies at most 5 GiB at once: a blob copied from its staging object goes in ranges.
    monkeypatch.setattr("weightyard.storage.s3._COPY_PART", 8 * 1024 * 1024)
    data = os.urandom(2 * PART + 12345)
    sha = hashlib.sha256(data).hexdigest()
    assert _write(store, data) == (BlobInfo(sha, len(data)), True)
    assert _read(store, sha) == data
    assert _objects(store) == [store.object_key(BLOBS, sha)]


@pytest.mark.parametrize("size", [1000, 2 * PART + 1], ids=["one-put", "multipart"])
@pytest.mark.parametrize("announced", [True, False], ids=["sha-announced", "sha-unknown"])
def test_mismatched_content_leaves_no_object_and_no_upload(
    store: S3ObjectStore, size: int, announced: bool
) -> None:
    data = os.urandom(size)
    wrong = hashlib.sha256(b"something else").hexdigest()
    writer = store.blob_writer(wrong if announced else None)
    writer.write(data)
    with pytest.raises(ContentMismatch):
        writer.seal(wrong, size)
    writer.abort()
    assert _objects(store) == []
    assert _uploads(store) == []


def _race(store: S3ObjectStore, data: bytes, writers: int) -> tuple[list[object], list[bool]]:
    """`writers` threads write `data` (announced) and publish at the same moment."""
    sha = hashlib.sha256(data).hexdigest()
    barrier = threading.Barrier(writers)
    results: list[object] = []
    created: list[bool] = []

    def upload() -> None:
        writer = store.blob_writer(sha)
        try:
            writer.write(data)
            blob = writer.seal(sha, len(data))
            barrier.wait(30)
            created.append(writer.publish())
            results.append(blob)
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=upload) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results, created


def test_eight_identical_concurrent_writers_all_succeed_and_exactly_one_creates(store: S3ObjectStore) -> None:
    data = os.urandom(64 * 1024)
    sha = hashlib.sha256(data).hexdigest()
    results, created = _race(store, data, 8)
    assert results == [BlobInfo(sha, len(data))] * 8
    assert sorted(created) == [False] * 7 + [True]
    assert _objects(store) == [store.object_key(BLOBS, sha)]
    assert _read(store, sha) == data


def test_concurrent_identical_multipart_writers_all_succeed_with_one_object(store: S3ObjectStore) -> None:
    data = os.urandom(PART + 4321)
    sha = hashlib.sha256(data).hexdigest()
    results, created = _race(store, data, 3)
    assert results == [BlobInfo(sha, len(data))] * 3
    # SeaweedFS's conditional CompleteMultipartUpload is not atomic under this race (several may "create"
    # the object: identical bytes, so harmless); a writer that comes after one completed never creates it.
    assert True in created
    assert _write(store, data, sha) == (BlobInfo(sha, len(data)), False)
    assert _objects(store) == [store.object_key(BLOBS, sha)]
    assert _uploads(store) == []
    assert _read(store, sha) == data


def test_an_existing_object_of_another_size_is_reported_damaged(store: S3ObjectStore) -> None:
    data = b"honest content"
    sha = hashlib.sha256(data).hexdigest()
    store.put_object(store.object_key(BLOBS, sha), b"short")
    with pytest.raises(StoredContentDamaged):
        _write(store, data)


def test_bytes_that_do_not_match_their_checksum_are_refused_by_the_server(store: S3ObjectStore) -> None:
    # What a byte damaged on the way looks like to SeaweedFS: content and x-amz-checksum-sha256 disagree.
    key = store.object_key(BLOBS, hashlib.sha256(b"x").hexdigest())
    with pytest.raises(ContentMismatch):
        store.put_object(key, b"y", hashlib.sha256(b"x").hexdigest())
    assert store.object_size(key) is None


def _stage_large(store: S3ObjectStore, data: bytes, upload_id: str) -> None:
    """Part 2 through the hub, part 1 through a presigned URL, as a client would."""
    upload = store.open_upload(upload_id, hashlib.sha256(data).hexdigest(), len(data), PART)
    writer = upload.part_writer(2)
    writer.write(data[PART:])
    writer.finish()
    url = store.presign_part(upload_id, 1, 300)
    assert url is not None
    assert httpx.put(url, content=data[:PART]).status_code == 200


def test_a_staged_upload_of_large_parts_is_verified_then_copied_into_place(store: S3ObjectStore) -> None:
    data = os.urandom(PART + 999)
    sha = hashlib.sha256(data).hexdigest()
    _stage_large(store, data, "big1")
    upload = store.open_upload("big1", sha, len(data), PART)
    assert upload.missing_parts() == []
    upload.seal()
    assert upload.digest() == sha
    assert store.size(BLOBS, sha) is None, "nothing is visible before publish"
    assert upload.publish(BlobInfo(sha, len(data))) is True
    assert _objects(store) == [store.object_key(BLOBS, sha)]
    assert _uploads(store) == []
    assert _read(store, sha) == data


def test_a_part_replaced_after_it_was_hashed_fails_the_copy(store: S3ObjectStore) -> None:
    data = os.urandom(PART + 999)
    sha = hashlib.sha256(data).hexdigest()
    _stage_large(store, data, "big2")
    upload = store.open_upload("big2", sha, len(data), PART)
    assert upload.digest() == sha
    url = store.presign_part("big2", 2, 300)
    assert url is not None
    assert httpx.put(url, content=os.urandom(999)).status_code == 200  # a client sends part 2 again
    with pytest.raises(ContentMismatch):
        upload.publish(BlobInfo(sha, len(data)))
    assert _objects(store) == []
    assert _uploads(store) == []


def test_a_presigned_part_of_the_wrong_size_does_not_count(store: S3ObjectStore) -> None:
    sha = hashlib.sha256(b"abc").hexdigest()
    upload = store.open_upload("small1", sha, PART + 10, PART)
    url = store.presign_part("small1", 2, 300)
    assert url is not None
    assert httpx.put(url, content=b"0123456789!").status_code == 200
    assert upload.missing_parts() == [1, 2]
    upload.discard()
    assert _objects(store) == []


@pytest.mark.parametrize("server", ["seaweedfs", "moto"])
def test_parts_under_five_mib_are_refused_at_completion(server: str, request: pytest.FixtureRequest) -> None:
    # The writer never sends one (it buffers the tail); a server that refuses one is a ContentMismatch.
    store: S3ObjectStore = request.getfixturevalue("store" if server == "seaweedfs" else "moto_store")
    key = store.object_key(BLOBS, hashlib.sha256(b"small parts").hexdigest())
    upload = store._start(key, checksummed=True)
    parts = [store._put_part(upload, 1, b"a" * 1000), store._put_part(upload, 2, b"b" * 1000)]
    with pytest.raises(ContentMismatch, match="at least"):
        store._complete(upload, parts, conditional=True)
    store._abort(upload)
    assert _objects(store) == []
    assert _uploads(store) == []


def test_what_a_dead_writer_leaves_in_the_bucket_is_listed_as_scratch_and_removed(
    store: S3ObjectStore,
) -> None:
    data = os.urandom(PART + 1)
    dead = store.blob_writer()
    dead.write(data)  # a writer that dies here leaves its multipart upload behind
    sealed = store.blob_writer()
    sealed.write(data)
    sealed.seal()  # and one that dies here its verified staging object
    leftovers = list(store.list_scratch())
    assert sorted(item.key.split("/")[0] for item in leftovers) == ["multipart", "staging"]
    assert all(abs(item.mtime - time.time()) < 3600 for item in leftovers)
    for item in leftovers:
        store.delete_scratch(item.key)
    assert list(store.list_scratch()) == []
    assert _uploads(store) == []
    assert _objects(store) == []
    store.delete_scratch("multipart/some-id/another-prefix/blobs/x")  # outside the prefix: left alone


def test_presigned_get_serves_ranges_and_the_bucket_refuses_anonymous_reads(store: S3ObjectStore) -> None:
    data = os.urandom(3000)
    blob, _ = _write(store, data)
    url = store.presign(BLOBS, blob.sha256, 300)
    assert url is not None
    assert httpx.get(url).content == data
    answer = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert answer.status_code == 206
    assert answer.content == data[10:20]
    assert store.location.endpoint_url is not None
    plain = f"{store.location.endpoint_url}/{store.location.bucket}/{store.object_key(BLOBS, blob.sha256)}"
    assert httpx.get(plain).status_code == 403


def test_concurrent_identical_writers_on_moto_also_make_one_object(moto_store: S3ObjectStore) -> None:
    data = os.urandom(PART + 10)
    sha = hashlib.sha256(data).hexdigest()
    first, second = moto_store.blob_writer(sha), moto_store.blob_writer(sha)
    first.write(data)
    second.write(data)
    assert first.seal() == second.seal() == BlobInfo(sha, len(data))
    assert (first.publish(), second.publish()) == (True, False)
    assert _objects(moto_store) == [moto_store.object_key(BLOBS, sha)]
    assert _uploads(moto_store) == []


def test_a_missing_bucket_is_storage_unavailable(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in credentials_env().items():
        monkeypatch.setenv(name, value)
    store = S3ObjectStore(S3Location("no-such-bucket", "p", moto_endpoint, REGION), tmp_path)
    with pytest.raises(StorageUnavailable, match="NoSuchBucket"):
        _write(store, b"data")
    with pytest.raises(StorageUnavailable):
        list(store.list(BLOBS))


def test_a_store_that_does_not_answer_is_storage_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name, value in credentials_env().items():
        monkeypatch.setenv(name, value)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = S3ObjectStore(S3Location("bucket", "p", f"http://127.0.0.1:{port}", REGION), tmp_path)
    with pytest.raises(StorageUnavailable):
        _write(store, b"data")


def test_the_blob_url_opens_an_s3_store(s3_url: str, tmp_path: Path) -> None:
    store = open_object_store(s3_url, tmp_path / "xorbs")
    assert isinstance(store, S3ObjectStore)
    writer = store.blob_writer()
    writer.write(b"through the URL")
    blob = writer.seal()
    assert writer.publish() is True
    assert store.size(BLOBS, blob.sha256) == len(b"through the URL")
    with pytest.raises(BadRequest, match="s3://"):
        open_object_store("gs://bucket/prefix", tmp_path / "xorbs")


def test_scratch_files_are_written_through_the_page_cache_to_be_sent_on(store: S3ObjectStore) -> None:
    # Read again whole as soon as they are complete (sent to the bucket): written through the page cache,
    # which keeps them, even from page-aligned buffers that a local store would write around it.
    buffer = mmap.mmap(-1, 64 * mmap.PAGESIZE)
    buffer[:] = os.urandom(len(buffer))
    scratch = store.scratch()
    try:
        scratch.write(memoryview(buffer))
        # Counted while dirty: clean pages may be reclaimed at any moment (this machine's kernel pages out
        # cold-looking page cache on its own), dirty ones are not.
        assert cached_pages(scratch.path) == 64
        scratch.sync()
    finally:
        scratch.discard()

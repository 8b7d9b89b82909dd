"""Content in an S3-compatible bucket: `s3://BUCKET/PREFIX?endpoint_url=http://HOST:PORT&region=REGION`.

Layout under PREFIX: `blobs/<sha256[:2]>/<sha256>` (whole blobs), `xorbs/<hash>` (Xet xorbs),
`uploads/<id>/<number>` (the parts of staged LFS uploads) and `staging/<id>` (a blob whose sha256 was not
known in advance, verified there before it is copied into place). Credentials come from the standard `AWS_*`
variables. Scratch files are local (`scratch_dir`).

A blob appears at its content address only once its sha256 and size have been checked, and only once: every
write completes with `If-None-Match: *`, so of several writers of the same content exactly one creates the
object and the others find it there (success, after checking its size). A mismatch aborts the upload and
leaves nothing visible. Each part the hub sends, and every object sent in one PUT, carries its
`x-amz-checksum-sha256`, which a validating server (AWS, SeaweedFS) checks on arrival: bytes damaged on the
way are refused there.

Two clients, each for what it does best. obstore reads (streamed ranged GETs, HEAD, LIST, DELETE, presigned
GETs): it streamed gigabyte objects with the least CPU and memory of the Python clients measured here.
botocore writes, because every write needs what obstore does not expose: a multipart upload under our
control (parts numbered across requests and server processes, a checksum per part, CompleteMultipartUpload
with `If-None-Match: *`, UploadPartCopy), ListMultipartUploads for gc, and presigned UploadPart URLs.
obstore's own `put(mode="create")` would hold the whole object in memory.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import queue
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import parse_qs, urlparse

import obstore
from obstore.store import S3Store

from weightyard.errors import (
    BadRequest,
    BlobNotFound,
    ContentMismatch,
    NotFound,
    StorageUnavailable,
    StoredContentDamaged,
)
from weightyard.storage.base import (
    BLOBS,
    SHA256_RE,
    XORBS,
    BlobInfo,
    Namespace,
    ScratchFile,
    StoredObject,
    check_sha256,
)
from weightyard.storage.local import LocalScratchFile

if TYPE_CHECKING:
    from obstore import GetOptions
    from obstore.store import ClientConfig, RetryConfig

MIB = 1024 * 1024
# S3's limits: every part but the last at least 5 MiB, at most 10,000 parts (so the 16 MiB parts a writer
# sends hold blobs up to 156 GiB), a copied part at most 5 GiB.
MIN_PART_SIZE = 5 * MIB
DEFAULT_PART_SIZE = 16 * MIB
# A copied part: large, so a server-side copy of a big blob takes few requests, and under 5 GiB.
_COPY_PART = 512 * MIB
# Pieces of a streamed read: what a response holds at once.
READ_PIECE = MIB
# Parts handed to the upload thread at once; with the one being filled, this bounds a writer's memory.
_UPLOAD_QUEUE_DEPTH = 2
_URL_OPTIONS = {"endpoint_url", "region"}
_UPLOADS = "uploads"
_STAGING = "staging"
_MULTIPART = "multipart"
_SCRATCH_PREFIX = "scratch-"
_MISMATCH_CODES = {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum"}
_TOO_SMALL = "EntityTooSmall"
_EXISTS_CODES = {"PreconditionFailed", "412"}


@dataclass(frozen=True)
class S3Location:
    """Where the store keeps its objects; parsed from a `WEIGHTYARD_BLOB_URL`."""

    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region: str | None = None

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """Example:
        >>> S3Location.parse("s3://models/hub?endpoint_url=http://127.0.0.1:8333&region=us-east-1").prefix
        'hub'
        """
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise BadRequest(f"not an s3://BUCKET/PREFIX URL: {url[:200]!r}")
        options = parse_qs(parsed.query, keep_blank_values=True)
        unknown = sorted(set(options) - _URL_OPTIONS)
        if unknown:
            raise BadRequest(
                f"unknown s3:// URL option(s) {', '.join(unknown)} (known: endpoint_url, region)"
            )
        endpoint = options.get("endpoint_url", [None])[-1] or None
        region = options.get("region", [None])[-1] or None
        return cls(parsed.netloc, parsed.path.strip("/"), endpoint, region)

    def key(self, *parts: str) -> str:
        return "/".join(part for part in (self.prefix, *parts) if part)


@dataclass(frozen=True)
class _Multipart:
    """An S3 multipart upload the hub drives (a blob writer's, or a server-side copy's)."""

    key: str
    upload_id: str


class S3ObjectStore:
    """The `ObjectStore` over a bucket (see the module docstring); scratch files live in `scratch_dir`."""

    local_files = False  # objects are in a bucket: the hub streams them

    def __init__(self, location: S3Location, scratch_dir: Path, part_size: int = DEFAULT_PART_SIZE) -> None:
        self.location = location
        self.part_size = max(part_size, MIN_PART_SIZE)
        self._scratch_dir = scratch_dir
        scratch_dir.mkdir(parents=True, exist_ok=True)
        self._reader = _obstore_client(location)
        self._client = _botocore_client(location)

    # -- keys

    def object_key(self, namespace: Namespace, key: str) -> str:
        """The bucket key of an object; raises `BlobNotFound` for a key no object can have."""
        if not SHA256_RE.match(key):
            raise BlobNotFound(f"no object {key[:80]!r}")
        if namespace == BLOBS:
            return self.location.key(BLOBS, key[:2], key)
        return self.location.key(XORBS, key)

    def _upload_prefix(self, upload_id: str) -> str:
        if not upload_id or not upload_id.isalnum() or not upload_id.isascii():
            raise NotFound(f"no upload {upload_id[:80]!r}")
        return self.location.key(_UPLOADS, upload_id) + "/"

    def _part_key(self, upload_id: str, number: int) -> str:
        return f"{self._upload_prefix(upload_id)}{number:05d}"

    # -- writing

    def blob_writer(self, sha256: str | None = None) -> S3ObjectWriter:
        if sha256 is not None:
            check_sha256(sha256)
        return S3ObjectWriter(self, sha256)

    def scratch(self) -> LocalScratchFile:
        # read again whole as soon as it is complete, to be sent to the bucket: through the page cache
        return LocalScratchFile(
            self._scratch_dir / f"{_SCRATCH_PREFIX}{uuid.uuid4().hex}", around_cache=False
        )

    def put_xorb(self, key: str, body: ScratchFile | bytes) -> bool:
        final = self.object_key(XORBS, key)
        if isinstance(body, bytes):
            return self.put_object(final, body)
        if not isinstance(body, LocalScratchFile):
            raise TypeError("a scratch file of another store")
        # A xorb is at most 64 MiB: it is sent in one PUT, with its sha256.
        body.close_synced()
        try:
            return self.put_object(final, body.path.read_bytes())
        finally:
            body.discard()

    def put_object(self, key: str, data: bytes, sha256: str | None = None) -> bool:
        """Create `key` holding `data` unless it exists; returns whether this call created it. `sha256`, the
        digest of `data` when the caller has it, goes to the server, which refuses the bytes unless they match
        (`ContentMismatch`). An existing object of another size is damaged storage (`StoredContentDamaged`):
        keys here name their content."""
        digest = bytes.fromhex(sha256) if sha256 else hashlib.sha256(data).digest()
        try:
            with _s3_errors(f"PUT {key}"):
                self._client.put_object(
                    Bucket=self.location.bucket,
                    Key=key,
                    Body=data,
                    ChecksumSHA256=_b64(digest),
                    IfNoneMatch="*",
                )
        except _AlreadyExists:
            self._check_existing(key, len(data))
            return False
        return True

    # -- reading

    def size(self, namespace: Namespace, key: str) -> int | None:
        try:
            return self.object_size(self.object_key(namespace, key))
        except BlobNotFound:
            return None

    def object_size(self, key: str) -> int | None:
        """The size of the object at bucket key `key` (a HEAD), or None when there is none."""
        try:
            with _obstore_errors(f"HEAD {key}"):
                meta = obstore.head(self._reader, key)
        except FileNotFoundError:
            return None
        return int(meta["size"])

    def open(self, namespace: Namespace, key: str) -> BinaryIO:
        """A seekable stream of the object that reads by ranged GETs."""
        bucket_key = self.object_key(namespace, key)
        size = self.object_size(bucket_key)
        if size is None:
            raise BlobNotFound(f"{namespace[:-1]} {key} is not stored")
        return io.BufferedReader(_RangedReader(self, bucket_key, size), buffer_size=READ_PIECE)

    def read(
        self, namespace: Namespace, key: str, start: int, end: int, piece_size: int
    ) -> Iterator[memoryview]:
        return self.read_object(self.object_key(namespace, key), start, end, piece_size)

    def read_object(
        self, key: str, start: int, end: int, piece_size: int, if_match: str | None = None
    ) -> Iterator[memoryview]:
        """Bytes [start, end) of bucket key `key` in pieces of at most `piece_size` (and 1 MiB), ending early
        where the object does; a generator, so the GET starts when the first piece is wanted. Raises
        `BlobNotFound` when the object is absent, `ContentMismatch` when it is not the version `if_match`."""
        piece = max(1, min(piece_size, READ_PIECE))
        if end <= start:
            return
        options: GetOptions = {"range": (start, end)}
        if if_match is not None:
            options["if_match"] = if_match
        try:
            with _obstore_errors(f"GET {key}"):
                result = obstore.get(self._reader, key, options=options)
                for chunk in result.stream(min_chunk_size=piece):
                    view = memoryview(chunk)
                    for offset in range(0, len(view), piece):
                        yield view[offset : offset + piece]
        except FileNotFoundError:
            raise BlobNotFound(f"{key} is not stored") from None
        except _RangePastEnd:
            if self.object_size(key) is None:
                raise BlobNotFound(f"{key} is not stored") from None
        except _VersionChanged:
            raise ContentMismatch(f"{key} changed while it was being read") from None

    def open_file(self, namespace: Namespace, key: str) -> io.FileIO | None:
        return None

    def read_into(self, namespace: Namespace, key: str, start: int, buffers: Sequence[memoryview]) -> int:
        wanted = sum(len(buffer) for buffer in buffers)
        targets = iter(buffers)
        target, filled, total = next(targets, None), 0, 0
        for piece in self.read(namespace, key, start, start + wanted, READ_PIECE):
            while piece and target is not None:
                count = min(len(piece), len(target) - filled)
                target[filled : filled + count] = piece[:count]
                piece, filled, total = piece[count:], filled + count, total + count
                if filled == len(target):
                    target, filled = next(targets, None), 0
        return total

    # -- removing and listing

    def delete(self, namespace: Namespace, key: str) -> None:
        with contextlib.suppress(BlobNotFound):
            self.delete_object(self.object_key(namespace, key))

    def delete_object(self, key: str) -> None:
        """Remove bucket key `key`; removing what is not there succeeds."""
        with _obstore_errors(f"DELETE {key}"):
            obstore.delete(self._reader, key)

    def list(self, namespace: Namespace, prefix: str = "") -> Iterator[StoredObject]:
        # A listing names a folder (obstore lists whole path segments): blob keys sit under their first two
        # characters, so a prefix of two or more narrows it to one folder; the names are filtered here.
        if namespace == BLOBS and len(prefix) >= 2:
            folder = self.location.key(BLOBS, prefix[:2]) + "/"
        else:
            folder = self.location.key(namespace) + "/"
        for key, size, mtime in self.list_objects(folder):
            name = key.rsplit("/", 1)[-1]
            if SHA256_RE.match(name) and name.startswith(prefix):
                yield StoredObject(name, size, mtime)

    def list_objects(self, prefix: str) -> Iterator[tuple[str, int, float]]:
        """(key, size, modification time) of every object whose bucket key starts with `prefix`, in key
        order."""
        with _obstore_errors(f"LIST {prefix}"):
            for batch in obstore.list(self._reader, prefix=prefix):
                for meta in batch:
                    yield meta["path"], int(meta["size"]), meta["last_modified"].timestamp()

    def list_scratch(self) -> Iterator[StoredObject]:
        """Local scratch files, and what a writer that died leaves in the bucket: its multipart upload
        (`multipart/<upload id>/<bucket key>`, invisible but stored until aborted) or its verified staging
        object (`staging/<id>`); gc removes the old ones with `delete_scratch`."""
        for path in sorted(self._scratch_dir.iterdir()):
            with contextlib.suppress(FileNotFoundError):
                if path.is_file():
                    info = path.stat()
                    yield StoredObject(path.name, info.st_size, info.st_mtime)
        paginator = self._client.get_paginator("list_multipart_uploads")
        with _s3_errors("list multipart uploads"):
            pages = list(paginator.paginate(Bucket=self.location.bucket, Prefix=self.location.key() + "/"))
        for page in pages:
            for upload in page.get("Uploads", []):
                name = f"{_MULTIPART}/{upload['UploadId']}/{upload['Key']}"
                yield StoredObject(name, 0, upload["Initiated"].timestamp())
        for key, size, mtime in self.list_objects(self.location.key(_STAGING) + "/"):
            yield StoredObject(f"{_STAGING}/{key.rsplit('/', 1)[-1]}", size, mtime)

    def delete_scratch(self, key: str) -> None:
        kind, _, rest = key.partition("/")
        if kind == _MULTIPART:
            upload_id, _, bucket_key = rest.partition("/")
            if upload_id and bucket_key.startswith(self.location.key() + "/"):
                self._abort(_Multipart(bucket_key, upload_id))
        elif kind == _STAGING:
            if rest.isalnum():
                self.delete_object(self.location.key(_STAGING, rest))
        elif not rest and key not in ("", ".", ".."):
            (self._scratch_dir / key).unlink(missing_ok=True)

    # -- staged uploads: each part an object `uploads/<id>/<number>`, so any process sees which are there

    def open_upload(self, upload_id: str, sha256: str | None, size: int, part_size: int) -> S3StagedUpload:
        self._upload_prefix(upload_id)
        if sha256 is not None:
            check_sha256(sha256)
        return S3StagedUpload(self, upload_id, size, part_size)

    def list_uploads(self) -> Iterator[StoredObject]:
        current: str | None = None
        size, newest = 0, 0.0
        for key, part_size, mtime in self.list_objects(self.location.key(_UPLOADS) + "/"):
            upload_id = key.rsplit("/", 2)[-2]
            if upload_id != current:
                if current is not None:
                    yield StoredObject(current, size, newest)
                current, size, newest = upload_id, 0, 0.0
            size, newest = size + part_size, max(newest, mtime)
        if current is not None:
            yield StoredObject(current, size, newest)

    def delete_upload(self, upload_id: str) -> None:
        keys = [key for key, _, _ in self.list_objects(self._upload_prefix(upload_id))]
        if keys:
            with _obstore_errors(f"DELETE the parts of upload {upload_id}"):
                obstore.delete(self._reader, keys)

    # -- presigning

    def presign(self, namespace: Namespace, key: str, expires_in: int) -> str | None:
        bucket_key = self.object_key(namespace, key)
        with _obstore_errors(f"sign GET {bucket_key}"):
            return obstore.sign(self._reader, "GET", bucket_key, timedelta(seconds=expires_in))

    def presign_part(self, upload_id: str, number: int, expires_in: int) -> str | None:
        """A URL that PUTs part `number` of the staged upload; it counts once it has exactly its size."""
        key = self._part_key(upload_id, number)
        with _obstore_errors(f"sign PUT {key}"):
            return obstore.sign(self._reader, "PUT", key, timedelta(seconds=expires_in))

    # -- S3 multipart uploads the hub drives

    def _start(self, key: str, *, checksummed: bool) -> _Multipart:
        checksum = {"ChecksumAlgorithm": "SHA256"} if checksummed else {}
        with _s3_errors(f"start an upload at {key}"):
            answer = self._client.create_multipart_upload(Bucket=self.location.bucket, Key=key, **checksum)
        return _Multipart(key, str(answer["UploadId"]))

    def _put_part(self, upload: _Multipart, number: int, data: bytes) -> dict[str, Any]:
        digest = _b64(hashlib.sha256(data).digest())
        with _s3_errors(f"part {number} of {upload.key}"):
            answer = self._client.upload_part(
                Bucket=self.location.bucket,
                Key=upload.key,
                UploadId=upload.upload_id,
                PartNumber=number,
                Body=data,
                ChecksumSHA256=digest,
            )
        return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": digest}

    def _abort(self, upload: _Multipart) -> None:
        with contextlib.suppress(_NoSuchUpload), _s3_errors(f"abort the upload at {upload.key}"):
            self._client.abort_multipart_upload(
                Bucket=self.location.bucket, Key=upload.key, UploadId=upload.upload_id
            )

    def _complete(self, upload: _Multipart, parts: Sequence[dict[str, Any]], *, conditional: bool) -> None:
        """Complete `upload`; with `conditional`, only where no object is (`_AlreadyExists` otherwise)."""
        extra = {"IfNoneMatch": "*"} if conditional else {}
        try:
            with _s3_errors(f"complete the upload at {upload.key}"):
                self._client.complete_multipart_upload(
                    Bucket=self.location.bucket,
                    Key=upload.key,
                    UploadId=upload.upload_id,
                    MultipartUpload={"Parts": sorted(parts, key=lambda part: int(part["PartNumber"]))},
                    **extra,
                )
        except _PartTooSmall:
            raise ContentMismatch(
                f"every part but the last must have at least {MIN_PART_SIZE} bytes"
            ) from None

    def _copy_into_place(self, sources: Sequence[tuple[str, str | None, int]], blob: BlobInfo) -> bool:
        """Assemble the verified objects `sources` ((key, ETag the caller read, size), in order, each but the
        last at least 5 MiB) into the blob's key, server-side, unless the blob is there already; returns
        whether this call created it. A source that changed since it was read fails the copy
        (`ContentMismatch`). A large source is copied in ranges of about `_COPY_PART` (S3 copies at most 5 GiB
        at once), all of them well over 5 MiB."""
        final = self.object_key(BLOBS, blob.sha256)
        if self.object_size(final) is not None:
            self._check_existing(final, blob.size)
            return False
        upload = self._start(final, checksummed=False)
        try:
            parts: list[dict[str, Any]] = []
            for source, etag, size in sources:
                pieces = max(1, -(-size // _COPY_PART))
                step = -(-size // pieces)
                for offset in range(0, size, step):
                    number = len(parts) + 1
                    condition = {"CopySourceIfMatch": etag} if etag else {}
                    last = min(offset + step, size) - 1
                    try:
                        with _s3_errors(f"copy part {number} into {final}"):
                            answer = self._client.upload_part_copy(
                                Bucket=self.location.bucket,
                                Key=final,
                                UploadId=upload.upload_id,
                                PartNumber=number,
                                CopySource={"Bucket": self.location.bucket, "Key": source},
                                CopySourceRange=f"bytes={offset}-{last}",
                                **condition,
                            )
                    except _AlreadyExists:
                        raise ContentMismatch(f"{source} changed after it was verified") from None
                    parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            self._complete(upload, parts, conditional=True)
        except _AlreadyExists:
            self._abort(upload)
            self._check_existing(final, blob.size)
            return False
        except BaseException:
            self._abort(upload)
            raise
        return True

    def _check_existing(self, key: str, size: int) -> None:
        """Another writer stored this content first: accept it if it is whole."""
        actual = self.object_size(key)
        if actual is None:
            raise StorageUnavailable(f"{key} was reported to exist, then was not found")
        if actual != size:
            raise StoredContentDamaged(f"{key} has {actual} bytes in storage, not the {size} of its content")


class S3ObjectWriter:
    """Streams a blob into the bucket while hashing it, so publishing it sends (almost) nothing more.

    Up to one part it is held in memory and sent in one PUT by `publish`, with its sha256 (which the server
    checks). Past one part it becomes a multipart upload whose parts carry their sha256: straight to the
    final key when the sha256 was announced (completed by `publish` with `If-None-Match: *`), else to a
    staging key, completed by `seal` and copied into place by `publish`. A second thread sends the parts,
    so hashing and sending overlap. Nothing is visible at the blob's key before `publish`.
    """

    def __init__(self, store: S3ObjectStore, announced: str | None) -> None:
        self._store = store
        self._announced = announced
        self._part_size = store.part_size
        self._hash = hashlib.sha256()
        self._size = 0
        self._buffer = bytearray()
        self._upload: _Multipart | None = None
        self._staged_at: str | None = None  # a completed staging object, copied into place by publish
        self._parts: list[dict[str, Any]] = []
        self._sent = 0
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=_UPLOAD_QUEUE_DEPTH)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._sealed: BlobInfo | None = None
        self._finished = False

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes | memoryview) -> None:
        if not data:
            return
        if self._error is not None:
            raise self._error
        self._hash.update(data)
        self._size += len(data)
        self._buffer += data
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            self._send(part)

    def _send(self, part: bytes) -> None:
        if self._upload is None:
            if self._announced is not None:
                key = self._store.object_key(BLOBS, self._announced)
            else:
                key = self._store.location.key(_STAGING, uuid.uuid4().hex)
            self._upload = self._store._start(key, checksummed=True)
            self._thread = threading.Thread(target=self._drain, name="s3-parts", daemon=True)
            self._thread.start()
        self._sent += 1
        self._queue.put((self._sent, part))

    def _drain(self) -> None:
        assert self._upload is not None
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is not None:
                continue
            number, data = item
            try:
                self._parts.append(self._store._put_part(self._upload, number, data))
            except BaseException as exc:  # re-raised in the writer's thread
                self._error = exc

    def _finish_parts(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error

    def seal(self, expected_sha256: str | None = None, expected_size: int | None = None) -> BlobInfo:
        try:
            if self._upload is not None and self._buffer:
                self._send(bytes(self._buffer))
                self._buffer = bytearray()
            self._finish_parts()
            sha256 = self._hash.hexdigest()
            if expected_size is not None and expected_size != self._size:
                raise ContentMismatch(f"expected {expected_size} bytes, received {self._size}")
            for announced in (expected_sha256, self._announced):
                if announced is not None and announced != sha256:
                    raise ContentMismatch(f"content sha256 is {sha256}, not the announced {announced}")
            if self._upload is not None and self._announced is None:
                self._store._complete(self._upload, self._parts, conditional=False)
                self._staged_at, self._upload = self._upload.key, None
        except BaseException:
            self.abort()
            raise
        self._sealed = BlobInfo(sha256, self._size)
        return self._sealed

    def publish(self) -> bool:
        blob = self._sealed
        if blob is None or self._finished:
            raise ContentMismatch("a blob is sealed, once, before it is published")
        final = self._store.object_key(BLOBS, blob.sha256)
        try:
            if self._staged_at is not None:
                created = self._store._copy_into_place([(self._staged_at, None, blob.size)], blob)
            elif self._upload is None:
                created = self._store.put_object(final, bytes(self._buffer), blob.sha256)
            else:
                try:
                    self._store._complete(self._upload, self._parts, conditional=True)
                    created = True
                except _AlreadyExists:
                    self._store._abort(self._upload)
                    self._store._check_existing(final, blob.size)
                    created = False
                self._upload = None
        finally:
            self.abort()  # removes what is left: a failed upload, the staging object
        return created

    def abort(self) -> None:
        with contextlib.suppress(BaseException):
            self._finish_parts()
        with contextlib.suppress(StorageUnavailable):
            if self._upload is not None:
                self._store._abort(self._upload)
            if self._staged_at is not None:
                self._store.delete_object(self._staged_at)
        self._upload = self._staged_at = None
        self._buffer = bytearray()
        self._finished = True


class S3StagedUpload:
    """A `StagedUpload` whose parts are objects `uploads/<id>/<number>`, PUT by the hub or by a client through
    a presigned URL; a part is there when its object has exactly its size.

    Completing it: `digest` reads the parts in order and hashes them (noting each part's ETag), and `publish`
    assembles them at the blob's key with `If-None-Match: *` only after the caller checked that digest, so
    nothing unverified is ever visible. Parts of at least 5 MiB are copied server-side (a part replaced since
    it was hashed fails the copy); smaller ones cannot be (S3 refuses such parts), and their bytes pass
    through the hub once more.
    """

    def __init__(self, store: S3ObjectStore, upload_id: str, size: int, part_size: int) -> None:
        self._store = store
        self._id = upload_id
        self._size = size
        self._part_size = part_size
        self._lock = threading.Lock()
        self._writing: set[int] = set()
        self._sealed = False
        self._discarded = False
        self._read_versions: dict[int, str] = {}

    @property
    def size(self) -> int:
        return self._size

    @property
    def part_size(self) -> int:
        return self._part_size

    @property
    def parts(self) -> int:
        return max(1, -(-self._size // self._part_size))

    def span(self, number: int) -> tuple[int, int]:
        start = (number - 1) * self._part_size
        return start, min(start + self._part_size, self._size)

    def part_writer(self, number: int) -> S3PartWriter:
        if not 1 <= number <= self.parts:
            raise NotFound(f"this upload has no part {number}")
        with self._lock:
            if self._sealed or self._discarded:
                raise NotFound("this upload is being completed; it takes no more parts")
            self._writing.add(number)
        start, end = self.span(number)
        return S3PartWriter(self, number, end - start)

    def _finished_part(self, number: int, path: Path, sha256: bytes) -> None:
        with self._lock:
            self._writing.discard(number)
            if self._discarded:
                raise NotFound("this upload was completed or abandoned meanwhile")
        key = self._store._part_key(self._id, number)
        with _s3_errors(f"PUT {key}"), open(path, "rb") as body:
            self._store._client.put_object(
                Bucket=self._store.location.bucket, Key=key, Body=body, ChecksumSHA256=_b64(sha256)
            )

    def _released(self, number: int) -> None:
        with self._lock:
            self._writing.discard(number)

    def seal(self) -> None:
        with self._lock:
            if self._writing:
                raise ContentMismatch(f"part {min(self._writing)} is still being written")
            self._sealed = True

    def _stored_parts(self) -> dict[int, tuple[str, int]]:
        """number -> (bucket key, size) of the part objects there are."""
        found: dict[int, tuple[str, int]] = {}
        for key, size, _ in self._store.list_objects(self._store._upload_prefix(self._id)):
            name = key.rsplit("/", 1)[-1]
            if name.isdigit():
                found[int(name)] = (key, size)
        return found

    def missing_parts(self) -> list[int]:
        stored = self._stored_parts()
        missing = []
        for number in range(1, self.parts + 1):
            start, end = self.span(number)
            if stored.get(number, ("", -1))[1] != end - start:
                missing.append(number)
        return missing

    def digest(self) -> str:
        digest = hashlib.sha256()
        self._read_versions = {}
        for number in range(1, self.parts + 1):
            key = self._store._part_key(self._id, number)
            with _obstore_errors(f"HEAD {key}"):
                try:
                    version = obstore.head(self._store._reader, key)["e_tag"]
                except FileNotFoundError:
                    raise ContentMismatch(f"part {number} is missing") from None
            start, end = self.span(number)
            received = 0
            for piece in self._store.read_object(key, 0, end - start + 1, READ_PIECE, if_match=version):
                digest.update(piece)
                received += len(piece)
            if received != end - start:
                raise ContentMismatch(f"part {number} has {received} bytes, not {end - start}")
            if version is not None:
                self._read_versions[number] = version
        return digest.hexdigest()

    def pieces(self, piece_size: int) -> Iterator[memoryview]:
        for number in range(1, self.parts + 1):
            start, end = self.span(number)
            key = self._store._part_key(self._id, number)
            version = self._read_versions.get(number)
            try:
                yield from self._store.read_object(key, 0, end - start, piece_size, if_match=version)
            except BlobNotFound:
                raise NotFound("this upload was completed or abandoned meanwhile") from None

    def publish(self, blob: BlobInfo) -> bool:
        try:
            spans = [self.span(number) for number in range(1, self.parts + 1)]
            if all(end - start >= MIN_PART_SIZE for start, end in spans[:-1]):
                sources = [
                    (self._store._part_key(self._id, number), self._read_versions.get(number), end - start)
                    for number, (start, end) in enumerate(spans, 1)
                ]
                return self._store._copy_into_place(sources, blob)
            writer = self._store.blob_writer(blob.sha256)
            try:
                for piece in self.pieces(READ_PIECE):
                    writer.write(bytes(piece))
                writer.seal(blob.sha256, blob.size)
                return writer.publish()
            finally:
                writer.abort()
        finally:
            self.discard()

    def discard(self) -> None:
        with self._lock:
            self._discarded = True
        self._store.delete_upload(self._id)


class S3PartWriter:
    """One part of an `S3StagedUpload`, spooled to a local scratch file while hashed, then sent in one PUT
    (with its sha256) by `finish`."""

    def __init__(self, upload: S3StagedUpload, number: int, expected: int) -> None:
        self._upload = upload
        self._number = number
        self._expected = expected
        self._scratch = upload._store.scratch()
        self._hash = hashlib.sha256()
        self._done = False

    @property
    def expected(self) -> int:
        return self._expected

    def write(self, data: bytes | memoryview) -> None:
        if self._scratch.size + len(data) > self._expected:
            raise ContentMismatch(f"part {self._number} must have {self._expected} bytes, received more")
        self._hash.update(data)
        self._scratch.write(data)

    def finish(self) -> None:
        try:
            if self._scratch.size != self._expected:
                raise ContentMismatch(
                    f"part {self._number} must have {self._expected} bytes, received {self._scratch.size}"
                )
            self._scratch.close_synced()
            self._upload._finished_part(self._number, self._scratch.path, self._hash.digest())
            self._done = True
        finally:
            self.abort()

    def abort(self) -> None:
        self._scratch.discard()
        if not self._done:
            self._upload._released(self._number)
        self._done = True


class _RangedReader(io.RawIOBase):
    """A seekable raw stream over one object, each read a ranged GET."""

    def __init__(self, store: S3ObjectStore, key: str, size: int) -> None:
        self._store = store
        self._key = key
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        end = min(self._size, self._position + len(view))
        filled = 0
        for piece in self._store.read_object(self._key, self._position, end, READ_PIECE):
            view[filled : filled + len(piece)] = piece
            filled += len(piece)
        self._position += filled
        return filled


class _AlreadyExists(Exception):
    """A write conditional on `If-None-Match: *` found an object there."""


class _PartTooSmall(Exception):
    """CompleteMultipartUpload refused a part under 5 MiB that was not the last."""


class _NoSuchUpload(Exception):
    """The multipart upload was completed or aborted already."""


class _RangePastEnd(Exception):
    """A ranged GET that starts at or after the object's end."""


class _VersionChanged(Exception):
    """A GET conditional on `If-Match` found another version of the object."""


@contextlib.contextmanager
def _s3_errors(action: str) -> Iterator[None]:
    """Translate botocore's errors into the hub's: a checksum the server refused is `ContentMismatch`,
    anything else it refused or a server that does not answer is `StorageUnavailable`."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _EXISTS_CODES or status == 412:
            raise _AlreadyExists(action) from exc
        if code in _MISMATCH_CODES:
            raise ContentMismatch(f"the object store refused the content's checksum ({action})") from exc
        if code == _TOO_SMALL:
            raise _PartTooSmall(action) from exc
        if code == "NoSuchUpload":
            raise _NoSuchUpload(action) from exc
        raise StorageUnavailable(
            f"the object store refused to {action}: {code} {error.get('Message', '')}"
        ) from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(f"the object store did not answer ({action}): {exc}") from exc


@contextlib.contextmanager
def _obstore_errors(action: str) -> Iterator[None]:
    """obstore raises `FileNotFoundError` for a missing object (left to the caller), its own errors else."""
    from obstore.exceptions import BaseError, PreconditionError

    try:
        yield
    except PreconditionError as exc:
        raise _VersionChanged(action) from exc
    except BaseError as exc:
        first_line = str(exc).split("\n", 1)[0][:300]
        # obstore reports a range that starts past the end (416) as a generic error, by its status
        if "416 Range Not Satisfiable" in first_line:
            raise _RangePastEnd(action) from exc
        raise StorageUnavailable(f"the object store failed to {action}: {first_line}") from exc


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _obstore_client(location: S3Location) -> S3Store:
    options: dict[str, Any] = {}
    if location.endpoint_url:
        options["endpoint"] = location.endpoint_url
        # A custom endpoint (SeaweedFS, MinIO) answers at its own host, bucket in the path.
        options["virtual_hosted_style_request"] = False
    if location.region:
        options["region"] = location.region
    client_options: ClientConfig | None = None
    if (location.endpoint_url or "").startswith("http://"):
        client_options = {"allow_http": True}
    # A store that does not answer fails the request in seconds, not after obstore's default 3 minutes.
    retry: RetryConfig = {"max_retries": 3, "retry_timeout": timedelta(seconds=30)}
    return S3Store(location.bucket, client_options=client_options, retry_config=retry, **options)


def _botocore_client(location: S3Location) -> Any:
    import botocore.session
    from botocore.config import Config

    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": "path" if location.endpoint_url else "auto"},
        # The checksums sent are the ones computed here (sha256); no second one per request.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"mode": "standard", "max_attempts": 3},
    )
    return botocore.session.get_session().create_client(
        "s3", endpoint_url=location.endpoint_url, region_name=location.region, config=config
    )

"""Content in an S3-compatible bucket: `s3://BUCKET/PREFIX?endpoint_url=http://HOST:PORT&region=REGION`.

Layout under PREFIX: `blobs/<sha256[:2]>/<sha256>` (whole blobs), `xorbs/<hash>` (Xet xorbs) and
`uploads/<id>` (objects being assembled: written, verified, then copied into place; never read as content).
Credentials come from the standard `AWS_*` variables.

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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import parse_qs, urlparse

import obstore
from obstore.store import S3Store

from weightyard.errors import (
    BadRequest,
    BlobNotFound,
    ContentMismatch,
    StorageUnavailable,
    StoredContentDamaged,
    StoredContentMissing,
)
from weightyard.storage.base import SHA256_RE, BlobInfo, check_sha256

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig

MIB = 1024 * 1024
GIB = 1024 * MIB
# S3's limits: every part but the last at least 5 MiB, at most 10,000 parts, a copied part at most 5 GiB.
MIN_PART_SIZE = 5 * MIB
MAX_PARTS = 10_000
MAX_COPY_PART = 5 * GIB
DEFAULT_PART_SIZE = 16 * MIB
# A copied part: large, so a server-side copy of a big blob takes few requests.
_COPY_PART = 512 * MIB
# Pieces of a streamed read: what a response holds at once.
READ_PIECE = MIB
# Parts handed to the upload thread at once; with the one being filled, this bounds a writer's memory.
_UPLOAD_QUEUE_DEPTH = 2
_URL_OPTIONS = {"endpoint_url", "region"}
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
class StagedUpload:
    """A multipart upload being assembled at a staging key, by the hub or by a client through presigned part
    URLs; `complete_upload` verifies it and copies it into place."""

    key: str
    upload_id: str
    # Whether every part carries its sha256 (uploads written by the hub); parts PUT by clients through
    # presigned URLs carry none, so an upload that takes them cannot ask for one.
    checksummed: bool = False


class S3BlobStore:
    """Blobs and xorbs in a bucket (see the module docstring)."""

    def __init__(self, location: S3Location, part_size: int = DEFAULT_PART_SIZE) -> None:
        self.location = location
        self.part_size = max(part_size, MIN_PART_SIZE)
        self._reader = _obstore_client(location)
        self._client = _botocore_client(location)

    # keys

    def blob_key(self, sha256: str) -> str:
        check_sha256(sha256)
        return self.location.key("blobs", sha256[:2], sha256)

    def xorb_key(self, xorb_hash: str) -> str:
        if not SHA256_RE.match(xorb_hash):
            raise BadRequest(f"not a xorb hash: {xorb_hash[:80]!r}")
        return self.location.key("xorbs", xorb_hash)

    def _staging_key(self) -> str:
        return self.location.key("uploads", uuid.uuid4().hex)

    def part_size_for(self, size: int | None) -> int:
        """The part size of an upload of `size` bytes: the store's, or more when 10,000 would not hold it."""
        if size is None:
            return self.part_size
        return max(self.part_size, -(-size // MAX_PARTS))

    # whole blobs

    def writer(self, expected_sha256: str | None = None, expected_size: int | None = None) -> S3BlobWriter:
        """A writer that streams into place; with the sha256 known in advance, straight to its final key."""
        return S3BlobWriter(self, expected_sha256, expected_size)

    def exists(self, sha256: str) -> bool:
        return self.object_size(self.blob_key(sha256)) is not None

    def size(self, sha256: str) -> int:
        size = self.object_size(self.blob_key(sha256))
        if size is None:
            raise BlobNotFound(f"blob {sha256} is not stored")
        return size

    def check_stored(self, sha256: str, size: int) -> None:
        actual = self.object_size(self.blob_key(sha256))
        if actual is None:
            raise StoredContentMissing(f"blob {sha256} is missing from storage")
        if actual != size:
            raise StoredContentDamaged(
                f"blob {sha256} has {actual} bytes in storage, not the {size} recorded"
            )

    def iter_range(self, sha256: str, start: int, end: int, chunk_size: int) -> Iterator[memoryview]:
        """The bytes [start, end) of the blob, streamed in pieces of at most `chunk_size` (and 1 MiB)."""
        return self.read_object(self.blob_key(sha256), start, end, chunk_size)

    def open(self, sha256: str) -> BinaryIO:
        """A seekable stream of the blob that reads by ranged GETs."""
        key = self.blob_key(sha256)
        size = self.size(sha256)
        return io.BufferedReader(_RangedReader(self, key, size), buffer_size=READ_PIECE)

    def delete(self, sha256: str) -> None:
        self.delete_object(self.blob_key(sha256))

    def list_blobs(self) -> Iterator[BlobInfo]:
        for key, size in self.list_objects(self.location.key("blobs") + "/"):
            name = key.rsplit("/", 1)[-1]
            if SHA256_RE.match(name):
                yield BlobInfo(name, size)

    def presign_get(self, sha256: str, expires: timedelta) -> str:
        """A URL that GETs the blob (Range honoured) without credentials, until `expires` from now."""
        return self.presign_get_object(self.blob_key(sha256), expires)

    # objects by key

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

    def object_size(self, key: str) -> int | None:
        """The size of the object at `key` (a HEAD), or None when there is none."""
        try:
            with _obstore_errors(f"HEAD {key}"):
                meta = obstore.head(self._reader, key)
        except FileNotFoundError:
            return None
        return int(meta["size"])

    def read_object(self, key: str, start: int, end: int, chunk_size: int) -> Iterator[memoryview]:
        """Bytes [start, end) of `key` in pieces of at most `chunk_size` (and 1 MiB); a generator, so the GET
        starts when the first piece is wanted. Raises `BlobNotFound` when the object is absent."""
        piece = max(1, min(chunk_size, READ_PIECE))
        if end <= start:
            return
        try:
            with _obstore_errors(f"GET {key}"):
                result = obstore.get(self._reader, key, options={"range": (start, end)})
                for chunk in result.stream(min_chunk_size=piece):
                    view = memoryview(chunk)
                    for offset in range(0, len(view), piece):
                        yield view[offset : offset + piece]
        except FileNotFoundError:
            raise BlobNotFound(f"{key} is not stored") from None

    def delete_object(self, key: str) -> None:
        """Remove `key`; removing what is not there succeeds."""
        with _obstore_errors(f"DELETE {key}"):
            obstore.delete(self._reader, key)

    def list_objects(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every object whose key starts with `prefix`."""
        with _obstore_errors(f"LIST {prefix}"):
            for batch in obstore.list(self._reader, prefix=prefix):
                for meta in batch:
                    yield meta["path"], int(meta["size"])

    def presign_get_object(self, key: str, expires: timedelta) -> str:
        with _obstore_errors(f"sign GET {key}"):
            return obstore.sign(self._reader, "GET", key, expires)

    # multipart uploads

    def start_upload(self, key: str | None = None, *, checksummed: bool = False) -> StagedUpload:
        """Open a multipart upload at `key` (by default a fresh staging key); `checksummed`: every part is
        sent by the hub with its sha256, which the server checks."""
        key = key or self._staging_key()
        checksum = {"ChecksumAlgorithm": "SHA256"} if checksummed else {}
        with _s3_errors(f"start an upload at {key}"):
            answer = self._client.create_multipart_upload(Bucket=self.location.bucket, Key=key, **checksum)
        return StagedUpload(key, str(answer["UploadId"]), checksummed)

    def put_part(self, upload: StagedUpload, number: int, data: bytes) -> dict[str, Any]:
        """Send part `number` (1-based), with its sha256 when the upload is checksummed; returns what
        completing the upload names it by."""
        reference: dict[str, Any] = {"PartNumber": number}
        if upload.checksummed:
            reference["ChecksumSHA256"] = _b64(hashlib.sha256(data).digest())
        with _s3_errors(f"part {number} of {upload.key}"):
            answer = self._client.upload_part(
                Bucket=self.location.bucket,
                Key=upload.key,
                UploadId=upload.upload_id,
                PartNumber=number,
                Body=data,
                **{name: value for name, value in reference.items() if name != "PartNumber"},
            )
        reference["ETag"] = answer["ETag"]
        return reference

    def presign_part(self, upload: StagedUpload, number: int, expires: timedelta) -> str:
        """A URL that PUTs part `number` of `upload` without credentials, until `expires` from now."""
        with _s3_errors(f"sign part {number} of {upload.key}"):
            return str(
                self._client.generate_presigned_url(
                    "upload_part",
                    Params={
                        "Bucket": self.location.bucket,
                        "Key": upload.key,
                        "UploadId": upload.upload_id,
                        "PartNumber": number,
                    },
                    ExpiresIn=int(expires.total_seconds()),
                )
            )

    def uploaded_parts(self, upload: StagedUpload) -> list[tuple[int, int]]:
        """(number, size) of the parts the server holds for `upload`, in order."""
        return [(int(part["PartNumber"]), int(part["Size"])) for part in self._list_parts(upload)]

    def abort_upload(self, upload: StagedUpload) -> None:
        """Discard `upload` and its parts; aborting one that is gone succeeds."""
        with contextlib.suppress(_NoSuchUpload), _s3_errors(f"abort the upload at {upload.key}"):
            self._client.abort_multipart_upload(
                Bucket=self.location.bucket, Key=upload.key, UploadId=upload.upload_id
            )

    def complete_upload(self, upload: StagedUpload, expected_sha256: str, expected_size: int) -> BlobInfo:
        """Verify a staged upload and make it the blob `expected_sha256`; raises `ContentMismatch` (leaving
        nothing behind) when its parts are not `expected_size` bytes of that content.

        The parts are assembled at the staging key, read back and hashed there, and only then copied into
        place (server-side) with `If-None-Match: *`: S3 offers no way to check the sha256 of a multipart
        upload's whole content before it becomes visible where it is completed, so it is completed where
        nobody reads.
        """
        check_sha256(expected_sha256)
        try:
            parts = self._list_parts(upload)
            numbers = [int(part["PartNumber"]) for part in parts]
            if numbers != list(range(1, len(parts) + 1)):
                raise ContentMismatch(f"the upload's parts are {numbers[:20]}, not 1 to {len(parts)}")
            received = sum(int(part["Size"]) for part in parts)
            if received != expected_size:
                raise ContentMismatch(f"expected {expected_size} bytes, received {received}")
            self._complete(upload, [_part_reference(part) for part in parts], conditional=False)
            self._verify_staged(upload.key, expected_sha256, expected_size)
            blob = BlobInfo(expected_sha256, expected_size)
            self._copy_into_place(upload.key, blob)
            return blob
        except BaseException:
            self.abort_upload(upload)
            raise
        finally:
            self.delete_object(upload.key)

    def abort_stale_uploads(self, older_than: timedelta) -> int:
        """Abort the multipart uploads under the prefix started more than `older_than` ago (a writer that
        died, a client that never completed); returns how many. Recent ones may still be written."""
        cutoff = datetime.now(UTC) - older_than
        aborted = 0
        paginator = self._client.get_paginator("list_multipart_uploads")
        prefix = self.location.key() + "/" if self.location.prefix else ""
        with _s3_errors("list multipart uploads"):
            pages = list(paginator.paginate(Bucket=self.location.bucket, Prefix=prefix))
        for page in pages:
            for upload in page.get("Uploads", []):
                if upload["Initiated"] < cutoff:
                    self.abort_upload(StagedUpload(upload["Key"], upload["UploadId"]))
                    aborted += 1
        return aborted

    # the steps

    def _list_parts(self, upload: StagedUpload) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        paginator = self._client.get_paginator("list_parts")
        with _s3_errors(f"list the parts of {upload.key}"):
            for page in paginator.paginate(
                Bucket=self.location.bucket, Key=upload.key, UploadId=upload.upload_id
            ):
                parts.extend(page.get("Parts", []))
        return sorted(parts, key=lambda part: int(part["PartNumber"]))

    def _complete(self, upload: StagedUpload, parts: list[dict[str, Any]], *, conditional: bool) -> None:
        """Complete `upload`; with `conditional`, only where no object is (`_AlreadyExists` otherwise)."""
        extra = {"IfNoneMatch": "*"} if conditional else {}
        try:
            with _s3_errors(f"complete the upload at {upload.key}"):
                self._client.complete_multipart_upload(
                    Bucket=self.location.bucket,
                    Key=upload.key,
                    UploadId=upload.upload_id,
                    MultipartUpload={"Parts": parts},
                    **extra,
                )
        except _PartTooSmall:
            raise ContentMismatch(
                f"every part but the last must have at least {MIN_PART_SIZE} bytes"
            ) from None

    def _verify_staged(self, key: str, expected_sha256: str, expected_size: int) -> None:
        digest = hashlib.sha256()
        received = 0
        for piece in self.read_object(key, 0, expected_size + 1, READ_PIECE):
            digest.update(piece)
            received += len(piece)
        if received != expected_size:
            raise ContentMismatch(f"expected {expected_size} bytes, received {received}")
        if digest.hexdigest() != expected_sha256:
            raise ContentMismatch(
                f"content sha256 is {digest.hexdigest()}, not the announced {expected_sha256}"
            )

    def _copy_into_place(self, source: str, blob: BlobInfo) -> bool:
        """Copy the verified object at `source` to the blob's key (server-side, in parts), unless it is
        there already; returns whether this call created it."""
        final = self.blob_key(blob.sha256)
        if self.object_size(final) is not None:
            self._check_existing(final, blob.size)
            return False
        upload = self.start_upload(final)
        try:
            part = min(MAX_COPY_PART, max(_COPY_PART, -(-blob.size // MAX_PARTS)))
            parts = []
            for number, offset in enumerate(range(0, max(blob.size, 1), part), 1):
                last = min(offset + part, blob.size) - 1
                copy_range = {"CopySourceRange": f"bytes={offset}-{last}"} if blob.size else {}
                with _s3_errors(f"copy part {number} into {final}"):
                    answer = self._client.upload_part_copy(
                        Bucket=self.location.bucket,
                        Key=final,
                        UploadId=upload.upload_id,
                        PartNumber=number,
                        CopySource={"Bucket": self.location.bucket, "Key": source},
                        **copy_range,
                    )
                parts.append({"PartNumber": number, "ETag": answer["CopyPartResult"]["ETag"]})
            self._complete(upload, parts, conditional=True)
        except _AlreadyExists:
            self.abort_upload(upload)
            self._check_existing(final, blob.size)
            return False
        except BaseException:
            self.abort_upload(upload)
            raise
        return True

    def _check_existing(self, key: str, size: int) -> None:
        """Another writer stored this content first: accept it if it is whole."""
        actual = self.object_size(key)
        if actual is None:
            raise StorageUnavailable(f"{key} was reported to exist, then was not found")
        if actual != size:
            raise StoredContentDamaged(f"{key} has {actual} bytes in storage, not the {size} of its content")


class S3BlobWriter:
    """Streams a blob into the bucket while hashing it, so completing it sends nothing more.

    Up to one part it is held in memory and sent in one PUT once its sha256 is known (the server checks that
    sha256). Past one part it becomes a multipart upload: straight to the final key when the sha256 was
    announced, else to a staging key copied into place at `commit`. A second thread sends the parts, so
    hashing and sending overlap. Nothing is visible before `commit` has checked the content.
    """

    def __init__(self, store: S3BlobStore, expected_sha256: str | None, expected_size: int | None) -> None:
        if expected_sha256 is not None:
            check_sha256(expected_sha256)
        self._store = store
        self._expected_sha256 = expected_sha256
        self._expected_size = expected_size
        self._part_size = store.part_size_for(expected_size)
        self._hash = hashlib.sha256()
        self._size = 0
        self._buffer = bytearray()
        self._upload: StagedUpload | None = None
        self._parts: list[dict[str, Any]] = []
        self._sent = 0
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(maxsize=_UPLOAD_QUEUE_DEPTH)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._done = False
        # Whether this writer's commit created the object (False: another writer had stored the content).
        self.created = False

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._error is not None:
            raise self._error
        if self._expected_size is not None and self._size + len(data) > self._expected_size:
            raise ContentMismatch(f"expected {self._expected_size} bytes, received more")
        self._hash.update(data)
        self._size += len(data)
        self._buffer += data
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            self._send(part)

    def _send(self, part: bytes) -> None:
        if self._upload is None:
            key = self._store.blob_key(self._expected_sha256) if self._expected_sha256 else None
            self._upload = self._store.start_upload(key, checksummed=True)
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
                self._parts.append(self._store.put_part(self._upload, number, data))
            except BaseException as exc:  # re-raised in the writer's thread
                self._error = exc

    def _finish_parts(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._error is not None:
            raise self._error

    def commit(self, expected_sha256: str | None = None, expected_size: int | None = None) -> BlobInfo:
        """Check the content against the expectations (given here or when the writer was made) and make it
        visible; raises `ContentMismatch`, leaving nothing behind, when one does not hold."""
        try:
            if self._done:
                raise RuntimeError("this writer was committed or aborted")
            expected_sha256 = expected_sha256 or self._expected_sha256
            expected_size = expected_size if expected_size is not None else self._expected_size
            if self._upload is not None and self._buffer:
                self._send(bytes(self._buffer))
                self._buffer.clear()
            self._finish_parts()
            sha256 = self._hash.hexdigest()
            if expected_size is not None and expected_size != self._size:
                raise ContentMismatch(f"expected {expected_size} bytes, received {self._size}")
            if expected_sha256 is not None and expected_sha256 != sha256:
                raise ContentMismatch(f"content sha256 is {sha256}, not the announced {expected_sha256}")
            blob = BlobInfo(sha256, self._size)
            if self._upload is None:
                self.created = self._store.put_object(
                    self._store.blob_key(sha256), bytes(self._buffer), sha256
                )
            elif self._upload.key == self._store.blob_key(sha256):
                self._complete_in_place(blob)
            else:
                self._store._complete(self._upload, self._parts_in_order(), conditional=False)
                try:
                    self.created = self._store._copy_into_place(self._upload.key, blob)
                finally:
                    self._store.delete_object(self._upload.key)
            self._done = True
            self._buffer = bytearray()
            return blob
        except BaseException:
            self.abort()
            raise

    def _complete_in_place(self, blob: BlobInfo) -> None:
        assert self._upload is not None
        try:
            self._store._complete(self._upload, self._parts_in_order(), conditional=True)
            self.created = True
        except _AlreadyExists:
            self._store.abort_upload(self._upload)
            self._store._check_existing(self._upload.key, blob.size)

    def _parts_in_order(self) -> list[dict[str, Any]]:
        return sorted(self._parts, key=lambda part: int(part["PartNumber"]))

    def abort(self) -> None:
        """Discard everything written so far. Safe to call more than once, and after `commit`."""
        with contextlib.suppress(BaseException):
            self._finish_parts()
        if not self._done and self._upload is not None:
            with contextlib.suppress(StorageUnavailable):
                self._store.abort_upload(self._upload)
        self._done = True
        self._buffer = bytearray()


class _RangedReader(io.RawIOBase):
    """A seekable raw stream over one object, each read a ranged GET."""

    def __init__(self, store: S3BlobStore, key: str, size: int) -> None:
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
    from obstore.exceptions import BaseError

    try:
        yield
    except BaseError as exc:
        first_line = str(exc).split("\n", 1)[0][:300]
        raise StorageUnavailable(f"the object store failed to {action}: {first_line}") from exc


def _part_reference(part: dict[str, Any]) -> dict[str, Any]:
    reference = {"PartNumber": int(part["PartNumber"]), "ETag": part["ETag"]}
    if part.get("ChecksumSHA256"):
        reference["ChecksumSHA256"] = part["ChecksumSHA256"]
    return reference


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

"""The object store interface: bytes by key in three namespaces, and nothing else.

`storage/` holds bytes; what they mean (which blob a repo names, where a Xet chunk lies, who may read what) is
recorded by the domain that queries it (under `repos/`). Nothing outside `storage/` sees a filesystem
path of stored content. Namespaces:

* `BLOBS`: whole files, keyed by their sha256 (lowercase hex);
* `XORBS`: Xet xorbs exactly as a client uploads them, keyed by the xorb hash in its string form;
* staged uploads: LFS multipart uploads, a blob that arrives as numbered parts (`StagedUpload`).

The contract every implementation keeps (`tests/storage/test_store_contract.py` runs it on each one):

* Objects are immutable and named by their content: writing a key that exists is success, never an error
  and never a change of its bytes. Creation is atomic: readers see all of an object or none of it, and
  a writer that fails or aborts (a size or hash mismatch, a dead client) leaves nothing visible.
* `ObjectWriter` hashes the bytes once, as they stream in, and checks expectations in `seal`; `publish` then
  makes the blob visible if it is absent (create-if-absent, e.g. S3 `If-None-Match: *`) and says whether
  this call created it. A concurrent writer of the same content losing the race is success (False).
* `size` is None for an absent object; `read` and `open` raise `BlobNotFound` for one. `read` yields the
  bytes `[start, end)` as memoryviews of at most `piece_size` bytes, lazily (nothing is opened before the
  first piece is wanted) and ends early if the object is shorter than `end`.
* `delete` of an absent key is a no-op. `list` yields every object of a namespace (under a key prefix when
  given) with its size and modification time (seconds since the epoch), in key order; gc, fsck and backup
  use it.
* Scratch files (`scratch`) are local temporary files a request spools into before its bytes are verified;
  they become objects through `put_xorb`, or are discarded. Leftovers of dead processes are listed by
  `list_scratch` and removed by `delete_scratch`.
* Staged uploads survive a restart and are visible to every process sharing the store: which parts are
  there is read from the store, never from one process's memory. `open_upload` creates or reopens one;
  `list_uploads` reports every upload (its id, bytes, last change) so gc can abort stale ones.
* Presigning is optional: a store that cannot hand out URLs (a local folder) answers None, and the hub
  then streams the bytes itself.
* `open_file` is optional too: a store whose objects are local files (`local_files`) hands one out, open,
  so that a server can send its bytes with `sendfile`; a remote store answers None.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import BinaryIO, Literal, Protocol

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")

Namespace = Literal["blobs", "xorbs"]
BLOBS: Namespace = "blobs"
XORBS: Namespace = "xorbs"


@dataclass(frozen=True)
class BlobInfo:
    sha256: str
    size: int


@dataclass(frozen=True)
class StoredObject:
    """One object as `list` reports it: its key, size in bytes and last modification (epoch seconds)."""

    key: str
    size: int
    mtime: float


class ObjectWriter(Protocol):
    """A blob being written. Bytes are hashed once, as they stream in; nothing is visible before `publish`."""

    @property
    def size(self) -> int: ...

    def write(self, data: bytes | memoryview) -> None: ...

    def seal(self, expected_sha256: str | None = None, expected_size: int | None = None) -> BlobInfo:
        """Finish writing: the bytes are durable, hashed and checked, but not yet visible.

        Raises `ContentMismatch` (and discards the bytes) when an expectation does not hold.
        """
        ...

    def publish(self) -> bool:
        """Make the sealed blob visible under its sha256 unless it already is; True when this call created
        it, False when identical content was there (a concurrent writer winning the race is success)."""
        ...

    def abort(self) -> None:
        """Discard everything written so far. Safe to call more than once, and after `publish`."""
        ...


class ScratchFile(Protocol):
    """A local temporary file a request spools into before its bytes are verified (see `put_xorb`)."""

    @property
    def size(self) -> int: ...

    def write(self, data: bytes | memoryview) -> None: ...

    def begin_write(self, data: bytes | memoryview) -> Future[None]:
        """`write`, possibly still under way in another thread when this returns (the caller checks the
        bytes meanwhile); have the future's `result` before `data` changes or the next write begins."""
        ...

    def sync(self) -> None:
        """Write back what was written so far, so that a later durable put has little left to wait for."""
        ...

    def begin_sync(self) -> Future[None]:
        """`sync`, possibly still under way in another thread when this returns: it covers the writes done
        when it begins. Have its `result` before the file is handed to the store or discarded."""
        ...

    def read_back(self, ranges: Iterable[tuple[int, int]]) -> Iterator[bytes | memoryview]:
        """The bytes written so far at each `(offset, size)` of `ranges`, in order; a view is valid only
        until the next range is taken."""
        ...

    def discard(self) -> None:
        """Remove the file. Safe to call more than once, and after the store took it over."""
        ...


class PartWriter(Protocol):
    """Writes one part of a staged upload; `finish` or `abort` ends it."""

    @property
    def expected(self) -> int:
        """The part's size: `finish` refuses any other count."""
        ...

    def write(self, data: bytes | memoryview) -> Future[None] | None:
        """Raises `ContentMismatch` when the part would exceed its size. A writer may return a future while a
        disk write still reads `data`: the caller keeps `data` as it is until that is done (its `result`
        raises what the write raised); `finish` and `abort` wait for every write."""
        ...

    def finish(self) -> None:
        """Count the part (durably). Raises `ContentMismatch` (and aborts) unless it has exactly its size,
        `NotFound` when the upload was completed or discarded meanwhile."""
        ...

    def abort(self) -> None: ...


class StagedUpload(Protocol):
    """A blob arriving as numbered parts of `part_size` bytes (1-based), in any order, perhaps more than
    once, through any process. A part counts once its writer finished; a part sent again replaces it."""

    @property
    def size(self) -> int: ...

    @property
    def part_size(self) -> int: ...

    @property
    def parts(self) -> int: ...

    def part_writer(self, number: int) -> PartWriter:
        """A writer for part `number`; raises `NotFound` once the upload is being completed."""
        ...

    def seal(self) -> None:
        """Take no more parts (before completing). Raises `ContentMismatch` while a part is being written."""
        ...

    def missing_parts(self) -> list[int]: ...

    def digest(self) -> str:
        """The sha256 of the assembled bytes, once every part is there."""
        ...

    def pieces(self, piece_size: int) -> Iterator[memoryview]:
        """The assembled bytes in order (for content that is stored otherwise than as one blob)."""
        ...

    def publish(self, blob: BlobInfo) -> bool:
        """Make the assembled bytes, whose digest the caller checked is `blob`, the blob (create-if-absent,
        as `ObjectWriter.publish`; on a local store nothing is copied). The upload is gone afterwards."""
        ...

    def discard(self) -> None:
        """Remove the upload and its parts. Safe to call more than once, and after `publish`."""
        ...


class ObjectStore(Protocol):
    """Bytes by key in the `BLOBS` and `XORBS` namespaces, plus staged uploads (see the module docstring)."""

    local_files: bool
    """Whether objects are local files, which `open_file` hands out."""

    def blob_writer(self, sha256: str | None = None) -> ObjectWriter:
        """A writer for one blob; `sha256`, when the caller knows what the content should hash to, lets a
        remote store stream straight to the final key (it is checked by `seal` all the same)."""
        ...

    def size(self, namespace: Namespace, key: str) -> int | None: ...

    def open(self, namespace: Namespace, key: str) -> BinaryIO:
        """A seekable, read-only binary stream of the object (on a local store a real file, which scanners
        map); raises `BlobNotFound` when absent."""
        ...

    def read(
        self, namespace: Namespace, key: str, start: int, end: int, piece_size: int
    ) -> Iterator[memoryview]:
        """The bytes `[start, end)` in pieces of at most `piece_size` (see the module docstring)."""
        ...

    def read_into(self, namespace: Namespace, key: str, start: int, buffers: Sequence[memoryview]) -> int:
        """Fill `buffers` in order with the object's bytes from `start` on; returns how many were read
        (fewer when the object ends first). Raises `BlobNotFound` when absent."""
        ...

    def open_file(self, namespace: Namespace, key: str) -> io.FileIO | None:
        """The object as an open local file (the caller closes it), for a server that sends its bytes with
        `sendfile`; None where objects are not local files. Raises `BlobNotFound` when absent."""
        ...

    def scratch(self) -> ScratchFile: ...

    def put_xorb(self, key: str, body: ScratchFile | bytes) -> bool:
        """Store a xorb the caller validated (taking a scratch file over), create-if-absent; True when this
        call created it."""
        ...

    def delete(self, namespace: Namespace, key: str) -> None: ...

    def list(self, namespace: Namespace, prefix: str = "") -> Iterator[StoredObject]: ...

    def list_scratch(self) -> Iterator[StoredObject]: ...

    def delete_scratch(self, key: str) -> None: ...

    def open_upload(self, upload_id: str, sha256: str | None, size: int, part_size: int) -> StagedUpload:
        """Create the staged upload `upload_id` (letters and digits) of the blob `sha256` (None: not known
        until completion), or reopen it as it stands; the same id is always opened with the same `sha256`,
        `size` and `part_size`."""
        ...

    def list_uploads(self) -> Iterator[StoredObject]:
        """Every staged upload: its id, the bytes it holds and when it last changed."""
        ...

    def delete_upload(self, upload_id: str) -> None: ...

    def presign(self, namespace: Namespace, key: str, expires_in: int) -> str | None:
        """A URL that reads the object without the hub for `expires_in` seconds, or None (stream instead)."""
        ...

    def presign_part(self, upload_id: str, number: int, expires_in: int) -> str | None:
        """A URL that takes part `number` of a staged upload without the hub, or None."""
        ...


def check_sha256(sha256: str) -> str:
    from weightyard.errors import BadRequest

    if not SHA256_RE.match(sha256):
        raise BadRequest(f"not a sha256 hex digest: {sha256[:80]!r}")
    return sha256


def unfinished(pending: Iterable[Future[None]]) -> list[Future[None]]:
    """The futures of `pending` still running (disk writes under way); raises what a finished one raised, so
    that a failed write no caller waited for is not forgotten."""
    running = []
    for future in pending:
        if not future.done():
            running.append(future)
        else:
            future.result()
    return running


def wait_all(pending: Iterable[Future[None]]) -> None:
    """Wait for every one of `pending` (disk writes and flushes under way); then raise the first that failed,
    if any: a caller about to reuse a buffer or close a file must not leave one running."""
    failure: BaseException | None = None
    for future in pending:
        try:
            future.result()
        except BaseException as exc:
            failure = failure or exc
    if failure is not None:
        raise failure

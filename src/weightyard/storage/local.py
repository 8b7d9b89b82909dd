"""The `ObjectStore` over local folders (`LocalObjectStore`): files written through a scratch file, an fsync
and a hard link into place."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import mmap
import os
import queue
import shutil
import threading
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from weightyard.errors import BlobNotFound, ContentMismatch, NotFound
from weightyard.storage.base import BlobInfo, ScratchFile, StoredObject, unfinished, wait_all

# Bytes a `LocalObjectWriter` holds for its disk thread, the piece being written included: a piece waits
# (uncopied) until the pieces before it leave at most this much. The bound is in bytes, not pieces: four
# queued 8 MiB windows of a whole copy rebuilt from xorbs, and the two beside them, held 48 MiB.
WRITE_AHEAD_BYTES = 16 * 1024 * 1024
_TMP_DIR = ".tmp"
# Linux maps a window's pages in one call instead of a fault per page; elsewhere the pages fault in as sent.
_MAP_POPULATE: int = getattr(mmap, "MAP_POPULATE", 0)
# Reads of a staged file that is hashed from disk: large, so hashing runs at the speed of sha256.
_HASH_READ = 8 * 1024 * 1024
_STAGED_DATA = "data"
# Left in a staged upload's folder by `StagedBlob.seal`: no part writer writes after it is there.
_STAGED_SEALED = "sealed"


def mapped_pieces(handle: io.FileIO, start: int, end: int, piece_size: int) -> Iterator[memoryview]:
    """Bytes `[start, end)` of an open file as read-only memory maps of up to `piece_size` bytes; closes it.

    A socket sends such a piece straight from the page cache, with no copy into the process first. Each piece
    maps its own window, unmapped once the last reference to it (the server's send buffer) is gone, so what
    is resident stays a few pieces. A file shorter than the range (cut short while being served) ends the
    stream early instead of faulting.
    """
    with handle:
        end = min(end, os.fstat(handle.fileno()).st_size)
        position = start
        while position < end:
            window_start = position - position % mmap.ALLOCATIONGRANULARITY
            length = min(end, position + piece_size) - window_start
            window = mmap.mmap(
                handle.fileno(),
                length,
                flags=mmap.MAP_SHARED | _MAP_POPULATE,
                prot=mmap.PROT_READ,
                offset=window_start,
            )
            yield memoryview(window)[position - window_start :]
            position = window_start + length


# Upload parts and scratch files are written around the page cache (O_DIRECT) where the file system allows
# it: in blocks of this size, at offsets of it, from buffers aligned to it (the receive buffers are
# page-aligned maps).
_DIRECT_ALIGN = 4096
_O_DIRECT = getattr(os, "O_DIRECT", 0)
# What a scratch file written around the cache reads back at a time, around the cache too, into one map.
_READ_BACK_WINDOW = 4 * 1024 * 1024
# A batch this large is written by a disk thread while the receiving thread hashes it (see
# `_AlignedWrites.begin`): the disk and sha256 then take their time side by side, not one after the other.
_OVERLAP_FROM = 256 * 1024
# The threads that write those batches, shared by every upload (they start as the first writes need them).
_DISK_WRITES = ThreadPoolExecutor(max_workers=8, thread_name_prefix="disk-write")


def _done() -> Future[None]:
    future: Future[None] = Future()
    future.set_result(None)
    return future


# How long completing an upload waits for the background hash of its last parts (a few parts of 64 MiB, well
# under a second each) before hashing the whole file from disk itself.
_CATCH_UP_WAIT_S = 60.0


class StagedBlob:
    """A blob that arrives as numbered parts of `part_size` bytes, in any order and possibly more than once,
    written where they belong in one staging file (`FOLDER/data`), so completing it copies nothing.

    The sha256 is computed once, in order: the part that starts where the hashed prefix ends is hashed while
    it is written, and parts that arrived ahead of it are read back (from the disk: parts are written around
    the page cache, see `_AlignedWrites`) as soon as the prefix reaches them, by a thread of their own, so
    that the request that finished a part is answered at once and the client's next part is not held up
    behind the hashing (`digest` waits for it). A part sent
    again after its bytes were hashed makes that hash worthless; `digest` then hashes the file from disk
    instead. Every finished part leaves an empty marker file `FOLDER/<number>`:
    markers, not this object's memory, say which parts are there, so a staged blob survives a restart of
    the server (its in-memory hash does not, and is recomputed from disk), and any server process may take
    any part or complete the upload; a lock on the file, not this object's memory, says when parts are still
    being written (see `_open_unsealed`).
    """

    def __init__(self, folder: Path, size: int, part_size: int) -> None:
        self.folder = folder
        self.path = folder / _STAGED_DATA
        self.size = size
        self.part_size = part_size
        self.parts = -(-size // part_size)
        self._lock = threading.Lock()
        self._hash_idle = threading.Condition(self._lock)  # notified whenever no thread extends the hash
        self._hash = hashlib.sha256()
        self._hashed = 0  # the prefix [0, _hashed) is in _hash
        self._hashing = False  # one thread at a time extends the hash
        self._stale = False  # bytes already hashed were written again
        self._writing: set[int] = set()
        # marker identities of the parts this object saw finish; another writer's marker differs
        self._finished: dict[int, tuple[int, int]] = {}

    def span(self, number: int) -> tuple[int, int]:
        """The byte range [start, end) of part `number` (1-based)."""
        start = (number - 1) * self.part_size
        return start, min(start + self.part_size, self.size)

    def part_writer(self, number: int) -> StagedPartWriter:
        """A writer for part `number`; its bytes count once `finish` has checked their size."""
        start, _ = self.span(number)
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = self._open_unsealed()
        try:
            with self._lock:
                # The marker goes first: until this part is finished again, it is not there.
                (self.folder / str(number)).unlink(missing_ok=True)
                if number in self._finished or number in self._writing or start < self._hashed:
                    self._stale = True
                self._finished.pop(number, None)
                self._writing.add(number)
                owns_hash = not self._hashing and not self._stale and start == self._hashed
                if owns_hash:
                    self._hashing = True
            if os.fstat(fd).st_size != self.size:
                os.ftruncate(fd, self.size)
        except BaseException:
            os.close(fd)
            raise
        return StagedPartWriter(self, number, fd, owns_hash)

    def _open_unsealed(self) -> int:
        """The staging file, open for a part writer, under a shared lock that it holds until it finishes.

        The lock (flock: per open file, so it also separates the objects of one process) is what stops a
        part writer of any server process from writing once `seal` began: `seal` takes it exclusively and
        leaves the `sealed` marker, which every writer checks after taking its shared lock. Without it, a part
        written through another process after the digest was checked would change the published blob.
        """
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            if (self.folder / _STAGED_SEALED).exists():
                raise NotFound("this upload is being completed; it takes no more parts")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _finished_part(self, number: int, owned_hash: bool) -> None:
        marker = self.folder / str(number)
        try:
            with open(marker, "wb"):
                pass
        except FileNotFoundError:
            raise NotFound("this upload was completed or abandoned meanwhile") from None
        info = marker.stat()
        with self._lock:
            self._writing.discard(number)
            self._finished[number] = (info.st_ino, info.st_mtime_ns)
            if owned_hash:
                self._hashed = self.span(number)[1]
            elif self._hashing:
                return
            self._hashing = True
        threading.Thread(target=self._catch_up, name="staged-sha256", daemon=True).start()

    def _catch_up(self) -> None:
        """Extend the hash over finished parts that follow the prefix; the caller owns the hash."""
        try:
            while True:
                with self._lock:
                    number = self._hashed // self.part_size + 1
                    if self._stale or self._hashed >= self.size or number not in self._finished:
                        return
                start, end = self.span(number)
                _hash_range(self.path, start, end, self._hash)
                with self._lock:
                    self._hashed = end
        except Exception:
            with self._lock:
                self._stale = True  # `digest` hashes the file from disk, and says what is wrong with it
        finally:
            with self._lock:
                self._hashing = False
                self._hash_idle.notify_all()

    def _released_hash(self, number: int, restore: hashlib._Hash, keep_writing: bool = False) -> None:
        with self._lock:
            if not keep_writing:
                self._writing.discard(number)
            self._hash = restore
            self._hashing = False
            self._hash_idle.notify_all()

    def _hash_passed(self, end: int) -> None:
        """The part writer that extends the hash has hashed its last byte (up to `end`): the hash is free for
        the part after it (`StagedPartWriter._take_hash`), or for the catch-up of finished parts."""
        with self._lock:
            self._hashed = end
            number = end // self.part_size + 1
            if number not in self._finished:
                self._hashing = False
                self._hash_idle.notify_all()
                return
        threading.Thread(target=self._catch_up, name="staged-sha256", daemon=True).start()

    def seal(self) -> None:
        """Take no more parts (before completing), whichever process writes them (see `_open_unsealed`).
        Raises `ContentMismatch` while a part is being written."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDONLY | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ContentMismatch("a part of this upload is still being written") from None
            with open(self.folder / _STAGED_SEALED, "wb"):
                pass
        finally:
            os.close(fd)

    def missing_parts(self) -> list[int]:
        return [n for n in range(1, self.parts + 1) if not (self.folder / str(n)).is_file()]

    def digest(self) -> str:
        """The sha256 of the staged file once every part is there (see `missing_parts`): the in-order hash
        when this object saw every part written and nothing since, else a fresh pass over the file."""
        with self._lock:
            # The last parts may still be being hashed in the background (see `_finished_part`).
            self._hash_idle.wait_for(lambda: not self._hashing, timeout=_CATCH_UP_WAIT_S)
            trusted = not self._stale and not self._writing and self._hashed == self.size
            hash_copy = self._hash.copy()
            seen = dict(self._finished)
        if trusted:
            for number in range(1, self.parts + 1):
                info = (self.folder / str(number)).stat()
                if seen.get(number) != (info.st_ino, info.st_mtime_ns):
                    trusted = False
                    break
        if trusted:
            return hash_copy.hexdigest()
        fresh = hashlib.sha256()
        _hash_range(self.path, 0, self.size, fresh)
        return fresh.hexdigest()


class StagedPartWriter:
    """Writes one part of a `StagedBlob` at its offset (see there); `finish` or `abort` ends it."""

    def __init__(self, staged: StagedBlob, number: int, fd: int, owns_hash: bool) -> None:
        self._staged = staged
        self._number = number
        self._fd = fd
        self._writes = _AlignedWrites(fd, staged.path)
        self._offset, self._end = staged.span(number)
        self.expected = self._end - self._offset
        self._owns_hash = owns_hash
        # the hash as it was before this part, restored if the part fails half way
        self._restore = staged._hash.copy() if owns_hash else None
        self.received = 0
        self._in_flight: list[Future[None]] = []  # disk writes begun and maybe not done

    def write(self, data: bytes | memoryview) -> Future[None]:
        """Write the next bytes at their place in the part, hashing them if the part holds the hash. The disk
        write may still run once this returns (the caller takes the next batch meanwhile): `data` must stay
        as it is until the returned future is done, which raises what the write raised. `finish` and `abort`
        wait for every write."""
        if self.received + len(data) > self.expected:
            raise ContentMismatch(f"part {self._number} must have {self.expected} bytes, received more")
        if not self._owns_hash and self.received < self.expected:
            self._take_hash()
        written = self._writes.begin(data, self._offset + self.received)
        try:
            # Raises what an earlier write raised; this one is waited for below, should anything raise.
            self._in_flight = [*unfinished(self._in_flight), written]
            if self._owns_hash:
                self._staged._hash.update(data)
        except BaseException:
            with contextlib.suppress(Exception):
                written.result()  # the buffer is the caller's again once this returns
            raise
        self.received += len(data)
        if self._owns_hash and self.received == self.expected:
            # Every byte hashed: the hash goes on to the next part now, not after this one's fdatasync.
            self._owns_hash, self._restore = False, None
            self._staged._hash_passed(self._end)
        return written

    def _written(self) -> None:
        """Wait for every disk write begun; raises the first that failed."""
        in_flight, self._in_flight = self._in_flight, []
        wait_all(in_flight)

    def _take_hash(self) -> None:
        """Take the hash over where the hashed prefix has reached this part's start and no thread extends it
        (the part before was hashed while this one arrived): the bytes written so far are read back, the rest
        hashed as they come."""
        staged = self._staged
        with staged._lock:
            if staged._hashing or staged._stale or staged._hashed != self._offset:
                return
            staged._hashing = True
        self._restore = staged._hash.copy()
        try:
            self._written()  # the bytes read back must be on the disk
            if self.received:
                _hash_range(staged.path, self._offset, self._offset + self.received, staged._hash)
        except BaseException:
            staged._released_hash(self._number, self._restore, keep_writing=True)
            self._restore = None
            raise
        self._owns_hash = True

    def finish(self) -> None:
        """Count the part: it must have exactly its size, every write done. Raises `ContentMismatch` (and
        aborts) otherwise, or what a write raised (the caller aborts)."""
        self._written()
        if self.received != self.expected:
            self.abort()
            raise ContentMismatch(
                f"part {self._number} must have {self.expected} bytes, received {self.received}"
            )
        # Written back now, while later parts arrive: the fsync at completion then has little left to do.
        os.fdatasync(self._fd)
        self._writes.close_direct()
        os.close(self._fd)
        self._fd = -1
        self._staged._finished_part(self._number, self._owns_hash)

    def abort(self) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(BaseException):
            self._written()  # no write may still use the descriptors closed here
        self._writes.close_direct()
        os.close(self._fd)
        self._fd = -1
        if self._restore is not None:
            self._staged._released_hash(self._number, self._restore)
        else:
            with self._staged._lock:
                self._staged._writing.discard(self._number)


class _AlignedWrites:
    """Writes to the file open as `fd`: whole blocks at aligned offsets from buffers aligned in memory (the
    receive buffers are page-aligned maps) go around the page cache (O_DIRECT), through a second descriptor;
    the rest (a short tail, an unaligned offset, an ordinary buffer) goes through the cache. Bytes hashed
    and checked as they arrive need not stay in memory: writing them through the cache would cost a copy and
    the allocation of every page, and push out what the cache holds for readers."""

    def __init__(self, fd: int, path: Path | None) -> None:
        """`path` is the file's, to open it around the cache; None writes everything through the cache."""
        self._fd = fd
        self._direct = _open_direct(path) if path is not None else -1
        # Cleared once the disk refuses a buffer (not aligned in memory): the rest goes through the cache. The
        # descriptor stays open until `close_direct`, since other writes may be using it.
        self._use_direct = self._direct >= 0

    def begin(self, data: bytes | memoryview, position: int) -> Future[None]:
        """`pwrite_all`, in a disk thread for a large batch (the caller hashes it meanwhile); the `result` of
        what is returned must be had before the buffer changes, whatever happens in between."""
        if len(data) < _OVERLAP_FROM:
            self.pwrite_all(data, position)
            return _done()
        return _DISK_WRITES.submit(self.pwrite_all, data, position)

    def pwrite_all(self, data: bytes | memoryview, position: int) -> None:
        view = memoryview(data)
        while view:
            written = self._write_direct(view, position) or os.pwrite(self._fd, view, position)
            view, position = view[written:], position + written

    def _write_direct(self, view: memoryview, position: int) -> int:
        blocks = len(view) - len(view) % _DIRECT_ALIGN
        if not self._use_direct or position % _DIRECT_ALIGN or not blocks:
            return 0
        try:
            return os.pwrite(self._direct, view[:blocks], position)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self._use_direct = False  # a buffer not aligned in memory (a body that came as ASGI messages)
            return 0

    @property
    def direct(self) -> bool:
        """Whether writes go around the cache (they may stop doing so: see `_write_direct`)."""
        return self._use_direct

    def close_direct(self) -> None:
        """Once no write is under way."""
        self._use_direct = False
        if self._direct >= 0:
            os.close(self._direct)
            self._direct = -1


def _open_direct(path: Path, mode: int = os.O_WRONLY) -> int:
    """A second descriptor of the file, for writes (or with `os.O_RDONLY`, reads) around the page cache
    (O_DIRECT); -1 where it cannot be had (a file system that refuses it, a system without O_DIRECT). A part
    writer writes through it only while its locked descriptor is open (see `StagedBlob._open_unsealed`)."""
    if not _O_DIRECT:
        return -1
    try:
        return os.open(path, mode | _O_DIRECT)
    except OSError:  # refused here, or out of descriptors: the bytes go through the page cache
        return -1


def _missing(offset: int, size: int) -> OSError:
    return OSError(f"the scratch file holds no {size} bytes at {offset}")


def _pread_exact(fd: int, offset: int, size: int) -> bytes:
    data = os.pread(fd, size, offset)
    if len(data) != size:
        raise _missing(offset, size)
    return data


def _hash_range(path: Path, start: int, end: int, into: hashlib._Hash) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(fd, start, end - start, os.POSIX_FADV_SEQUENTIAL)
        position = start
        while position < end:
            data = os.pread(fd, min(_HASH_READ, end - position), position)
            if not data:
                raise ContentMismatch(f"the staged file ends at {position}, before {end}")
            into.update(data)
            position += len(data)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_UPLOADS = "parts"
_SCRATCH_PREFIX = "scratch-"
# Multipart uploads whose in-order hash this process keeps; one forgotten is hashed from disk at completion.
_STAGED_IN_MEMORY = 256
_IOV_MAX = 1024  # buffers one `os.preadv` call takes at most (IOV_MAX on Linux)


def _hex_key(key: str, length: int) -> str:
    if len(key) != length or any(c not in "0123456789abcdef" for c in key):
        raise BlobNotFound(f"no object {key[:80]!r}")
    return key


class LocalObjectStore:
    """The `ObjectStore` over local folders: blobs at `ROOT/ab/cd/<sha256>`, xorbs at `XORBS/ab/<hash>`,
    scratch files in `ROOT/.tmp`, staged uploads in `ROOT/.tmp/parts/<id>/` (see `StagedBlob`).

    Every object is a file moved into place with a hard link (create-if-absent, atomic) after an fsync. An
    object found with another length than the one being stored is damage, and is replaced.
    """

    local_files = True

    def __init__(self, root: Path, xorb_root: Path | None = None) -> None:
        self.root = root
        self.xorb_root = xorb_root if xorb_root is not None else root / ".xorbs"
        self._tmp = root / _TMP_DIR
        self._uploads = self._tmp / _UPLOADS
        self._uploads.mkdir(parents=True, exist_ok=True)
        self._staged: dict[str, StagedBlob] = {}
        self._staged_lock = threading.Lock()

    def _path(self, namespace: str, key: str) -> Path:
        if namespace == "blobs":
            return self.root / key[:2] / key[2:4] / _hex_key(key, 64)
        return self.xorb_root / key[:2] / _hex_key(key, 64)

    def _scratch_path(self) -> Path:
        return self._tmp / f"{_SCRATCH_PREFIX}{uuid.uuid4().hex}"

    # -- writing

    def blob_writer(self, sha256: str | None = None) -> LocalObjectWriter:
        return LocalObjectWriter(self)

    def scratch(self) -> LocalScratchFile:
        return LocalScratchFile(self._scratch_path())

    def put_xorb(self, key: str, body: ScratchFile | bytes) -> bool:
        final = self._path("xorbs", key)
        if not isinstance(body, bytes):
            if not isinstance(body, LocalScratchFile):
                raise TypeError("a scratch file of another store")
            body.close_synced()
            return self._install(body.path, final)
        written = self._scratch_path()
        try:
            with open(written, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            return self._install(written, final)
        finally:
            written.unlink(missing_ok=True)

    def _install(self, written: Path, final: Path) -> bool:
        """Put a complete, fsynced file in place unless an intact copy is there; removes `written`."""
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            try:
                os.link(written, final)
            except FileExistsError:
                if final.stat().st_size == written.stat().st_size:
                    return False
                os.replace(written, final)  # damaged in storage: the verified bytes take its place
            _fsync_dir(final.parent)
            return True
        finally:
            written.unlink(missing_ok=True)

    # -- reading

    def size(self, namespace: str, key: str) -> int | None:
        try:
            return self._path(namespace, key).stat().st_size
        except (FileNotFoundError, BlobNotFound):
            return None

    def _open_raw(self, namespace: str, key: str) -> io.FileIO:
        try:
            handle = io.FileIO(self._path(namespace, key), "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"{namespace[:-1]} {key} is not stored") from None
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        return handle

    def open(self, namespace: str, key: str) -> BinaryIO:
        return io.BufferedReader(self._open_raw(namespace, key))

    def open_file(self, namespace: str, key: str) -> io.FileIO:
        return self._open_raw(namespace, key)

    def read(self, namespace: str, key: str, start: int, end: int, piece_size: int) -> Iterator[memoryview]:
        # A generator: the file opens when the bytes are wanted, so a response never sent holds no file.
        yield from mapped_pieces(self._open_raw(namespace, key), start, end, piece_size)

    def read_into(self, namespace: str, key: str, start: int, buffers: Sequence[memoryview]) -> int:
        # Scatter reads copy each byte once, from the page cache into place.
        try:
            fd = os.open(self._path(namespace, key), os.O_RDONLY)
        except FileNotFoundError:
            raise BlobNotFound(f"{namespace[:-1]} {key} is not stored") from None
        try:
            return _scatter_read(fd, start, buffers)
        finally:
            os.close(fd)

    # -- removing and listing

    def delete(self, namespace: str, key: str) -> None:
        with contextlib.suppress(BlobNotFound):
            self._path(namespace, key).unlink(missing_ok=True)

    def list(self, namespace: str, prefix: str = "") -> Iterator[StoredObject]:
        root, depth = (self.root, 2) if namespace == "blobs" else (self.xorb_root, 1)
        yield from _walk(root, depth, prefix)

    def list_scratch(self) -> Iterator[StoredObject]:
        for path in sorted(self._tmp.iterdir()):
            with contextlib.suppress(FileNotFoundError):
                if path.is_file():
                    info = path.stat()
                    yield StoredObject(path.name, info.st_size, info.st_mtime)

    def delete_scratch(self, key: str) -> None:
        if "/" not in key and key not in ("", ".", ".."):
            (self._tmp / key).unlink(missing_ok=True)

    # -- staged uploads

    def open_upload(self, upload_id: str, sha256: str | None, size: int, part_size: int) -> LocalStagedUpload:
        folder = self._uploads / _upload_name(upload_id)
        # The in-order hash is a cache: `StagedBlob` checks it against the part markers before trusting it.
        with self._staged_lock:
            staged = self._staged.pop(upload_id, None)
            if staged is None or staged.folder != folder:
                staged = StagedBlob(folder, size, part_size)
            self._staged[upload_id] = staged
            if len(self._staged) > _STAGED_IN_MEMORY:
                del self._staged[next(iter(self._staged))]
        return LocalStagedUpload(self, upload_id, staged)

    def list_uploads(self) -> Iterator[StoredObject]:
        for folder in sorted(self._uploads.iterdir()):
            if folder.is_dir():
                size, mtime = _folder_usage(folder)
                yield StoredObject(folder.name, size, mtime)

    def delete_upload(self, upload_id: str) -> None:
        with self._staged_lock:
            self._staged.pop(upload_id, None)
        shutil.rmtree(self._uploads / _upload_name(upload_id), ignore_errors=True)

    def _publish_staged(self, staged: StagedBlob, blob: BlobInfo) -> bool:
        fd = os.open(staged.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        return self._install(staged.path, self._path("blobs", blob.sha256))

    # -- presigning: a folder has no URLs of its own; the hub streams

    def presign(self, namespace: str, key: str, expires_in: int) -> str | None:
        return None

    def presign_part(self, upload_id: str, number: int, expires_in: int) -> str | None:
        return None


class LocalObjectWriter:
    """`BlobWriter` of a `LocalObjectStore`: hashes in the caller's thread while a second thread writes to a
    scratch file, so the two overlap (hashlib and file writes release the GIL for large buffers)."""

    def __init__(self, store: LocalObjectStore) -> None:
        self._store = store
        self._tmp_path = store._scratch_path()
        self._file = open(self._tmp_path, "wb", buffering=0)  # noqa: SIM115 - closed in seal/abort
        self._hash = hashlib.sha256()
        self._size = 0
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._held = 0  # bytes queued or being written; under `_room`
        self._room = threading.Condition()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="blob-writer", daemon=True)
        self._thread.start()
        self._closed = False
        self._sealed: BlobInfo | None = None

    @property
    def size(self) -> int:
        return self._size

    def _drain(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            size = len(data)
            try:
                if self._error is None:
                    self._write_all(data)
            except BaseException as exc:  # re-raised in the caller's thread
                self._error = exc
            del data  # freed before its room is given back
            with self._room:
                self._held -= size
                self._room.notify()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = self._file.write(view)
            view = view[written:]

    @property
    def held(self) -> int:
        """Bytes handed to the disk thread and not yet written."""
        with self._room:
            return self._held

    def write(self, data: bytes | memoryview) -> None:
        if not data:
            return
        if self._error is not None:
            raise self._error
        self._hash.update(data)
        self._size += len(data)
        with self._room:
            # One piece is always let through, however large; the disk thread makes room.
            self._room.wait_for(lambda: self._held == 0 or self._held + len(data) <= WRITE_AHEAD_BYTES)
            self._held += len(data)
        self._queue.put(bytes(data) if not isinstance(data, bytes) else data)

    def _finish_writes(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def seal(self, expected_sha256: str | None = None, expected_size: int | None = None) -> BlobInfo:
        try:
            self._finish_writes()
            sha256 = self._hash.hexdigest()
            if expected_size is not None and expected_size != self._size:
                raise ContentMismatch(f"expected {expected_size} bytes, received {self._size}")
            if expected_sha256 is not None and expected_sha256 != sha256:
                raise ContentMismatch(f"content sha256 is {sha256}, not the announced {expected_sha256}")
            os.fsync(self._file.fileno())
            self._file.close()
            self._closed = True
        except BaseException:
            self.abort()
            raise
        self._sealed = BlobInfo(sha256=sha256, size=self._size)
        return self._sealed

    def publish(self) -> bool:
        if self._sealed is None:
            raise ContentMismatch("a blob is sealed before it is published")
        return self._store._install(self._tmp_path, self._store._path("blobs", self._sealed.sha256))

    def abort(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(BaseException):
                self._finish_writes()
        if not self._closed:
            self._file.close()
            self._closed = True
        self._tmp_path.unlink(missing_ok=True)


class LocalScratchFile:
    """A `ScratchFile` in the store's temporary folder. With `around_cache`, written as `_AlignedWrites` (a
    xorb's bytes are checked as they arrive and kept where they are: what is read back comes from the disk);
    without, through the page cache (a store that reads the whole file again at once, to send it on)."""

    def __init__(self, path: Path, around_cache: bool = True) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        self._writes = _AlignedWrites(self._fd, path if around_cache else None)
        self._size = 0

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes | memoryview) -> None:
        self.begin_write(data).result()

    def begin_write(self, data: bytes | memoryview) -> Future[None]:
        pending = self._writes.begin(data, self._size)
        self._size += len(data)
        return pending

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def begin_sync(self) -> Future[None]:
        return _DISK_WRITES.submit(os.fdatasync, self._fd)

    def read_back(self, ranges: Iterable[tuple[int, int]]) -> Iterator[bytes | memoryview]:
        """Written around the cache, the bytes come from the disk the same way: windows of a few MiB read
        with O_DIRECT into one map, each range a view of it (valid until the next is taken), instead of a
        read into fresh page-cache pages and a copy for every range."""
        direct = _open_direct(self.path, os.O_RDONLY) if self._writes.direct else -1
        cached = os.open(self.path, os.O_RDONLY)
        try:
            window = memoryview(mmap.mmap(-1, _READ_BACK_WINDOW)) if direct >= 0 else None  # page-aligned
            held, count = 0, 0  # the window holds the file's bytes [held, held + count)
            for offset, size in ranges:
                if window is None or size > _READ_BACK_WINDOW - _DIRECT_ALIGN:
                    yield _pread_exact(cached, offset, size)
                    continue
                if not (held <= offset and offset + size <= held + count):
                    held = offset - offset % _DIRECT_ALIGN
                    try:
                        count = os.preadv(direct, [window], held)
                    except OSError as exc:
                        if exc.errno != errno.EINVAL:
                            raise
                        window = None  # refused after all: the rest through the cache
                        yield _pread_exact(cached, offset, size)
                        continue
                    if offset + size > held + count:
                        raise _missing(offset, size)
                yield window[offset - held : offset - held + size]
        finally:
            os.close(cached)
            if direct >= 0:
                os.close(direct)

    def close_synced(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            self._close()

    def _close(self) -> None:
        self._writes.close_direct()
        os.close(self._fd)
        self._fd = -1

    def discard(self) -> None:
        if self._fd >= 0:
            self._close()
        self.path.unlink(missing_ok=True)


class LocalStagedUpload:
    """A `StagedUpload` of a `LocalObjectStore`: a `StagedBlob` in `ROOT/.tmp/parts/<id>/`."""

    def __init__(self, store: LocalObjectStore, upload_id: str, staged: StagedBlob) -> None:
        self._store = store
        self._id = upload_id
        self._staged = staged

    @property
    def size(self) -> int:
        return self._staged.size

    @property
    def part_size(self) -> int:
        return self._staged.part_size

    @property
    def parts(self) -> int:
        return self._staged.parts

    def part_writer(self, number: int) -> StagedPartWriter:
        return self._staged.part_writer(number)

    def seal(self) -> None:
        self._staged.seal()
        # Written back now, before the caller takes its write lock to publish: `publish` then waits for none.
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(self._staged.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def missing_parts(self) -> list[int]:
        return self._staged.missing_parts()

    def digest(self) -> str:
        return self._staged.digest()

    def pieces(self, piece_size: int) -> Iterator[memoryview]:
        try:
            handle = io.FileIO(self._staged.path, "rb")
        except FileNotFoundError:
            raise NotFound("this upload was completed or abandoned meanwhile") from None
        yield from mapped_pieces(handle, 0, self._staged.size, piece_size)

    def publish(self, blob: BlobInfo) -> bool:
        try:
            return self._store._publish_staged(self._staged, blob)
        finally:
            self.discard()

    def discard(self) -> None:
        self._store.delete_upload(self._id)


def _upload_name(upload_id: str) -> str:
    if not upload_id or not upload_id.isalnum() or not upload_id.isascii():
        raise NotFound(f"no upload {upload_id[:80]!r}")
    return upload_id


def _walk(root: Path, depth: int, prefix: str) -> Iterator[StoredObject]:
    """Objects under `root` at `depth` two-character folders, keys starting with `prefix`, in key order."""
    if not root.is_dir():
        return
    folders = [root]
    for level in range(depth):
        part = prefix[2 * level : 2 * level + 2]
        folders = [
            child
            for folder in folders
            for child in sorted(folder.iterdir())
            if len(child.name) == 2 and child.name.startswith(part) and child.is_dir()
        ]
    for folder in folders:
        for path in sorted(folder.iterdir()):
            if path.name.startswith(prefix) and len(path.name) == 64:
                with contextlib.suppress(FileNotFoundError):
                    info = path.stat()
                    yield StoredObject(path.name, info.st_size, info.st_mtime)


def _folder_usage(folder: Path) -> tuple[int, float]:
    size, newest = 0, 0.0
    with contextlib.suppress(FileNotFoundError):
        newest = folder.stat().st_mtime
        for path in folder.iterdir():
            with contextlib.suppress(FileNotFoundError):
                info = path.stat()
                size += info.st_size
                newest = max(newest, info.st_mtime)
    return size, newest


def _scatter_read(fd: int, start: int, buffers: Sequence[memoryview]) -> int:
    """`os.preadv` until `buffers` are full or the file ends; returns the bytes read."""
    done, index, pending = 0, 0, list(buffers)
    while index < len(pending):
        count = os.preadv(fd, pending[index : index + _IOV_MAX], start + done)
        if count == 0:
            break
        done += count
        while index < len(pending) and count >= len(pending[index]):
            count -= len(pending[index])
            index += 1
        if count:
            pending[index] = pending[index][count:]
    return done

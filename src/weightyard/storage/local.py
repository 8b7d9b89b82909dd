"""Blobs in a local folder: `ROOT/ab/cd/<sha256>`, written through a temporary file, fsync and rename."""

from __future__ import annotations

import contextlib
import hashlib
import io
import mmap
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import sqlalchemy as sa

from weightyard.db import insert_ignore, tables, transaction, utcnow
from weightyard.errors import BlobNotFound, ContentMismatch, StoredContentDamaged, StoredContentMissing
from weightyard.faults import crash_point
from weightyard.storage.base import BlobInfo, check_sha256

# Bytes handed to the disk thread at once; a few of these in flight bound the writer's memory.
_WRITE_QUEUE_DEPTH = 4
_TMP_DIR = ".tmp"
_SWEEP_AGE = 24 * 3600.0


class LocalBlobWriter:
    """Hashes in the caller's thread while a second thread writes to disk, so the two overlap.

    hashlib and file writes both release the GIL for large buffers, which is what makes the overlap real.
    """

    def __init__(self, store: LocalBlobStore) -> None:
        self._store = store
        self._tmp_path = store.tmp_dir / uuid.uuid4().hex
        self._file = open(self._tmp_path, "wb", buffering=0)  # noqa: SIM115 - closed in commit/abort
        self._hash = hashlib.sha256()
        self._size = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=_WRITE_QUEUE_DEPTH)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="blob-writer", daemon=True)
        self._thread.start()
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    def _drain(self) -> None:
        while True:
            data = self._queue.get()
            if data is None:
                return
            if self._error is not None:
                continue
            try:
                view = memoryview(data)
                while view:
                    written = self._file.write(view)
                    view = view[written:]
            except BaseException as exc:  # re-raised in the caller's thread
                self._error = exc

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._error is not None:
            raise self._error
        self._hash.update(data)
        self._size += len(data)
        self._queue.put(bytes(data) if not isinstance(data, bytes) else data)

    def _finish_writes(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def commit(self, expected_sha256: str | None = None, expected_size: int | None = None) -> BlobInfo:
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
            blob = BlobInfo(sha256=sha256, size=self._size)
            self._store.place(self._tmp_path, blob)
            return blob
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(BaseException):
                self._finish_writes()
        if not self._closed:
            self._file.close()
            self._closed = True
        self._tmp_path.unlink(missing_ok=True)


class LocalBlobStore:
    """Content-addressed blobs in a folder. Temporary files live in `ROOT/.tmp` and are swept at start.

    With the hub's database, a blob file is moved into place inside the write transaction that records its
    `blobs` row, and removed again if that transaction fails: outside a write transaction, every file in
    place has its row. A `kill -9` between the move and the commit leaves a file without a row, which
    `weightyard gc` (holding the same write lock, so never racing a placement) removes.
    """

    def __init__(self, root: Path, engine: sa.Engine | None = None) -> None:
        self.root = root
        self.tmp_dir = root / _TMP_DIR
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self._engine = engine

    def place(self, written: Path, blob: BlobInfo) -> None:
        """Move a complete, fsynced file into place as `blob` and record its row (see the class docstring)."""
        final = self.path_for(blob.sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        if self._engine is None:
            os.replace(written, final)
            _fsync_dir(final.parent)
            return
        placed = False
        try:
            with transaction(self._engine) as conn:
                placed = not final.is_file()
                os.replace(written, final)
                _fsync_dir(final.parent)
                now = utcnow()
                insert_ignore(
                    conn, tables.blobs, [{"sha256": blob.sha256, "size": blob.size, "created_at": now}]
                )
                # Stored again: gc's age of unreferenced content counts from the latest upload.
                conn.execute(
                    sa.update(tables.blobs).where(tables.blobs.c.sha256 == blob.sha256).values(created_at=now)
                )
                crash_point("blob.placed")
        except BaseException:
            if placed:
                final.unlink(missing_ok=True)
            raise

    def check_stored(self, sha256: str, size: int) -> None:
        """Raise unless the blob is stored whole: `StoredContentMissing`, or `StoredContentDamaged` when the
        file is shorter or longer than recorded. Checked before a download sends its headers."""
        try:
            actual = self.path_for(sha256).stat().st_size
        except FileNotFoundError:
            raise StoredContentMissing(f"blob {sha256} is missing from storage") from None
        if actual != size:
            raise StoredContentDamaged(
                f"blob {sha256} has {actual} bytes in storage, not the {size} recorded"
            )

    def sweep_temporary(self, older_than: float = _SWEEP_AGE) -> int:
        """Remove leftovers of writers that died mid-upload; returns how many were removed.

        Only old files go: another server process sharing the folder may be writing the recent ones.
        """
        removed = 0
        cutoff = time.time() - older_than
        for leftover in self.tmp_dir.iterdir():
            if leftover.is_file() and leftover.stat().st_mtime < cutoff:
                leftover.unlink(missing_ok=True)
                removed += 1
        return removed

    def path_for(self, sha256: str) -> Path:
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def writer(self) -> LocalBlobWriter:
        return LocalBlobWriter(self)

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def size(self, sha256: str) -> int:
        try:
            return self.path_for(sha256).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {sha256} is not stored") from None

    def open(self, sha256: str) -> BinaryIO:
        return io.BufferedReader(self._open_raw(sha256))

    def _open_raw(self, sha256: str) -> io.FileIO:
        try:
            handle = io.FileIO(self.path_for(sha256), "rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {sha256} is not stored") from None
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
        return handle

    def iter_range(self, sha256: str, start: int, end: int, chunk_size: int) -> Iterator[memoryview]:
        return mapped_pieces(self._open_raw(sha256), start, end, chunk_size)

    def delete(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)


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
                flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                prot=mmap.PROT_READ,
                offset=window_start,
            )
            yield memoryview(window)[position - window_start :]
            position = window_start + length


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

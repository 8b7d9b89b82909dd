"""What the local-folder store adds to the contract: memory-mapped pieces and the on-disk layout."""

from __future__ import annotations

import concurrent.futures
import errno
import fcntl
import hashlib
import mmap
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tests.page_cache import cached_pages

from weightyard.storage import BLOBS, XORBS, LocalObjectStore, local
from weightyard.storage.local import LocalScratchFile


def _put(store: LocalObjectStore, data: bytes) -> str:
    writer = store.blob_writer()
    writer.write(data)
    sha = writer.seal().sha256
    writer.publish()
    return sha


def test_every_range_of_a_blob_reads_back_across_map_windows(tmp_path: Path) -> None:
    # Pieces are memory maps whose windows start on allocation boundaries: ranges starting and ending
    # anywhere, in pieces smaller and larger than a boundary, must give exactly the stored bytes.
    store = LocalObjectStore(tmp_path / "blobs")
    data = random.Random(3).randbytes(3 * mmap.ALLOCATIONGRANULARITY + 123)
    sha = _put(store, data)
    boundary, size = mmap.ALLOCATIONGRANULARITY, len(data)
    for start, end in [(0, size), (1, boundary + 1), (boundary - 1, size), (size - 1, size)]:
        for piece_size in (1000, boundary, 2 * boundary + 7):
            pieces = list(store.read(BLOBS, sha, start, end, piece_size))
            assert b"".join(pieces) == data[start:end], (start, end, piece_size)
            assert all(0 < len(piece) <= piece_size for piece in pieces)


def test_a_blob_cut_short_ends_its_stream_early_instead_of_faulting(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "blobs")
    sha = _put(store, b"x" * 10_000)
    os.truncate(tmp_path / "blobs" / sha[:2] / sha[2:4] / sha, 4000)
    assert b"".join(store.read(BLOBS, sha, 0, 10_000, 3000)) == b"x" * 4000


def test_objects_keep_the_data_folder_layout_that_backups_and_restores_rely_on(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "blobs", tmp_path / "xorbs")
    sha = _put(store, b"layout")
    xorb = hashlib.sha256(b"xorb").hexdigest()
    store.put_xorb(xorb, b"body")
    assert (tmp_path / "blobs" / sha[:2] / sha[2:4] / sha).read_bytes() == b"layout"
    assert (tmp_path / "xorbs" / xorb[:2] / xorb).read_bytes() == b"body"
    assert store.size(XORBS, xorb) == 4


def test_a_damaged_object_is_replaced_by_verified_bytes_of_the_same_content(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "blobs")
    sha = _put(store, b"y" * 5000)
    os.truncate(tmp_path / "blobs" / sha[:2] / sha[2:4] / sha, 10)
    writer = store.blob_writer()
    writer.write(b"y" * 5000)
    writer.seal()
    assert writer.publish() is True
    assert store.size(BLOBS, sha) == 5000


def test_parts_that_arrived_ahead_are_hashed_in_the_background_before_completion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parts finished last-first: finishing the first one answers at once, while the hash of the parts
    # ahead of it (held here until released) catches up by itself; the completion then uses that hash
    # without reading the file again (shown by changing the file once the hash is done).
    release = threading.Event()
    hash_range = local._hash_range

    def held(*args: Any) -> None:
        assert release.wait(30)
        hash_range(*args)

    monkeypatch.setattr(local, "_hash_range", held)
    store = LocalObjectStore(tmp_path / "blobs")
    data = random.Random(5).randbytes(4 * 50_000)
    upload = store.open_upload("ahead", hashlib.sha256(data).hexdigest(), len(data), 50_000)
    for number in (4, 3, 2, 1):
        writer = upload.part_writer(number)
        writer.write(data[(number - 1) * 50_000 : number * 50_000])
        finishing = threading.Thread(target=writer.finish)
        finishing.start()
        finishing.join(10)
        assert not finishing.is_alive(), f"finishing part {number} waited for the hash"
    staged = upload._staged
    assert staged._hashed == 50_000  # part 1, hashed as it was written; the rest not yet
    release.set()
    deadline = time.monotonic() + 30
    while staged._hashed < len(data):
        assert time.monotonic() < deadline, "the background hash did not reach the end"
        time.sleep(0.01)
    with open(staged.path, "r+b") as handle:
        handle.write(b"changed after hashing")
    upload.seal()
    assert upload.digest() == hashlib.sha256(data).hexdigest()


def _hash_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The ranges of the staged file read back to be hashed, from now on."""
    reads: list[tuple[int, int]] = []
    hash_range = local._hash_range

    def counted(path: Path, start: int, end: int, into: Any) -> None:
        reads.append((start, end))
        hash_range(path, start, end, into)

    monkeypatch.setattr(local, "_hash_range", counted)
    return reads


def _two_parts(tmp_path: Path, size: int, seed: int) -> tuple[bytes, Any, Any, Any]:
    """A staged upload of two parts of `size` bytes (its data, the upload) and a writer for each part, both
    opened before either writes."""
    store = LocalObjectStore(tmp_path / "blobs")
    data = random.Random(seed).randbytes(2 * size)
    upload = store.open_upload(f"parts{seed}", hashlib.sha256(data).hexdigest(), len(data), size)
    return data, upload, upload.part_writer(1), upload.part_writer(2)


def test_a_part_arriving_while_the_one_before_is_written_takes_the_hash_over_after_its_last_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Part 2 begins while part 1 is still arriving. Once part 1 has hashed its last byte (before its
    # fdatasync and its answer), part 2 takes the hash over at its next write: it reads back only what
    # it had written by then and hashes the rest as it comes, so nothing is left to hash at completion.
    reads = _hash_reads(monkeypatch)
    size = 40_000
    data, upload, first, second = _two_parts(tmp_path, size, 7)
    second.write(data[size : size + 3000])  # the hash is part 1's: part 2 cannot take it yet
    first.write(data[:30_000])
    second.write(data[size + 3000 : size + 5000])
    first.write(data[30_000:size])  # part 1's last byte: the hash is free for part 2
    staged = upload._staged
    assert staged._hashed == size and not staged._hashing
    second.write(data[size + 5000 : size + 9000])  # takes it over: reads back its first 5000 bytes
    assert reads == [(size, size + 5000)]
    second.write(data[size + 9000 :])
    assert staged._hashed == 2 * size, "hashed to the end before either part finished"
    first.finish()
    second.finish()
    upload.seal()
    with open(staged.path, "r+b") as handle:  # the completion does not read the file again
        handle.write(b"changed after hashing")
    assert upload.digest() == hashlib.sha256(data).hexdigest()
    assert reads == [(size, size + 5000)]


def test_a_part_taking_the_hash_over_reads_back_only_once_its_own_writes_are_on_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `write` may return while its disk write still runs. Part 2's first batch is held in its disk thread;
    # once part 1 hands the hash on, part 2's next write must wait for that batch before reading it back to
    # hash it: read sooner, the file would still have a hole there, and the hash would be of zeros.
    reads = _hash_reads(monkeypatch)
    size = 1024 * 1024
    half = size // 2  # large enough for a disk thread (local._OVERLAP_FROM)
    data, upload, first, second = _two_parts(tmp_path, size, 8)
    real_pwrite = os.pwrite
    disk = threading.Event()

    def pwrite(fd: int, view: Any, offset: int) -> int:
        if offset >= size:
            assert disk.wait(30), "the test never let part 2's writes through"
        return real_pwrite(fd, view, offset)

    monkeypatch.setattr(local.os, "pwrite", pwrite)
    held = second.write(data[size : size + half])  # the hash is part 1's: only written, and held
    assert not held.done()
    first.write(data[:size]).result()  # part 1's last byte: the hash is free for part 2
    taking_over = threading.Thread(target=lambda: second.write(data[size + half :]).result())
    taking_over.start()
    time.sleep(0.2)  # the take-over waits for the held write (were it not to, it would read a hole now)
    assert reads == [], "read back before the bytes were written"
    disk.set()
    taking_over.join(30)
    assert not taking_over.is_alive()
    assert reads == [(size, size + half)]
    first.finish()
    second.finish()
    upload.seal()
    assert upload.digest() == hashlib.sha256(data).hexdigest()
    assert upload._staged.path.read_bytes() == data


def test_a_part_that_fails_after_taking_the_hash_over_gives_it_back_where_the_part_before_left_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _hash_reads(monkeypatch)
    size = 30_000
    data, upload, first, second = _two_parts(tmp_path, size, 8)
    first.write(data[:size])
    first.finish()
    second.write(data[size : size + 1000])  # takes the hash over from part 1's end
    second.abort()  # the client went away
    again = upload.part_writer(2)  # sent again from its start: the hash is where part 1 left it
    again.write(data[size:])
    again.finish()
    upload.seal()
    assert upload.digest() == hashlib.sha256(data).hexdigest()
    assert (0, len(data)) not in reads, "the in-order hash was kept, not recomputed"


def test_parts_in_aligned_buffers_are_written_around_the_page_cache_and_the_rest_through_it(
    tmp_path: Path,
) -> None:
    # A part's bytes are hashed as they arrive; written through the page cache they would cost a copy and a
    # page each, and push out what the cache holds for readers. The receive buffers are page-aligned maps:
    # their whole blocks go around the cache (O_DIRECT). A short tail, and bytes in an ordinary (unaligned)
    # buffer, go through it; the blob is the same either way.
    store = LocalObjectStore(tmp_path / "blobs")
    part = 1024 * 1024
    data = random.Random(9).randbytes(2 * part + 100)
    upload = store.open_upload("direct", hashlib.sha256(data).hexdigest(), len(data), part)
    staged = upload._staged
    buffer = mmap.mmap(-1, part)  # page-aligned, like the receive buffers
    writer = upload.part_writer(1)
    buffer[:] = data[:part]
    writer.write(memoryview(buffer)).result()
    # Before `finish` writes the file back: written through the cache, the pages would still be dirty, which
    # reclaim leaves in place, so none cached means none went through it.
    assert cached_pages(staged.path) == 0, "part 1 went around the page cache"
    writer.finish()
    writer = upload.part_writer(2)
    # Bytes one past a page boundary: never aligned for O_DIRECT, so through the cache. (A `bytes` object's
    # data sits wherever malloc put it, on a 512-byte boundary, all the disk asks, once in 32 or so.)
    shifted = mmap.mmap(-1, part + 1)
    shifted[1:] = data[part : 2 * part]
    with memoryview(shifted) as whole, whole[1:] as unaligned:
        writer.write(unaligned).result()
    # Counted while dirty, before `finish` writes them back: clean pages may be reclaimed at any moment (this
    # machine's kernel pages out cold-looking page cache on its own), dirty ones are not.
    assert cached_pages(staged.path) >= part // mmap.PAGESIZE
    writer.finish()
    writer = upload.part_writer(3)
    buffer[:100] = data[2 * part :]
    writer.write(memoryview(buffer)[:100])  # a tail shorter than a block
    writer.finish()
    upload.seal()
    assert upload.digest() == hashlib.sha256(data).hexdigest()
    assert staged.path.read_bytes() == data


def test_a_buffer_the_disk_refuses_sends_the_rest_through_the_cache_and_leaves_the_descriptor_to_other_writes(
    tmp_path: Path,
) -> None:
    # Several writes of one file may be under way at once (a part or a xorb is checked while the disk takes
    # the batches before it): the one the disk refuses must not close the descriptor another is writing with.
    path = tmp_path / "file"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    writes = local._AlignedWrites(fd, path)
    try:
        if not writes.direct:
            pytest.fail("this file system refuses O_DIRECT: the test needs one that takes it")
        data = random.Random(12).randbytes(2 * mmap.PAGESIZE)
        shifted = mmap.mmap(-1, len(data) + 1)
        shifted[1:] = data
        with memoryview(shifted) as whole, whole[1:] as unaligned:
            writes.pwrite_all(unaligned, 0)  # refused around the cache: written through it
        assert not writes.direct, "the rest goes through the cache"
        os.fstat(writes._direct)  # still open for the writes that may be using it
        writes.close_direct()
        assert writes._direct == -1
        assert path.read_bytes() == data
    finally:
        os.close(fd)


def test_xorb_scratch_files_are_written_around_the_page_cache_and_read_back_from_the_disk(
    tmp_path: Path,
) -> None:
    store = LocalObjectStore(tmp_path / "blobs")
    data = random.Random(10).randbytes(3 * mmap.PAGESIZE * 64 + 5)
    buffer = mmap.mmap(-1, 2 * mmap.PAGESIZE * 64)  # page-aligned, like the receive buffers
    buffer[:] = data[: len(buffer)]
    scratch = store.scratch()
    try:
        scratch.write(memoryview(buffer))
        assert cached_pages(scratch.path) == 0
        scratch.write(data[len(buffer) :])  # an ordinary buffer: through the cache
        assert cached_pages(scratch.path) > 0
        assert scratch.size == len(data)
        ranges = [(0, 10), (len(buffer) - 3, 10), (len(data) - 5, 5)]
        assert [bytes(v) for v in scratch.read_back(ranges)] == [data[s : s + n] for s, n in ranges]
    finally:
        scratch.discard()
    assert not scratch.path.exists()


def _chunk_ranges(total: int, seed: int) -> list[tuple[int, int]]:
    """Consecutive ranges of chunk-like sizes (8 to 130 kB) over `total` bytes, as a xorb's payloads are."""
    rng = random.Random(seed)
    ranges, offset = [], 0
    while offset < total:
        size = min(rng.randrange(8000, 130_000), total - offset)
        ranges.append((offset, size))
        offset += size + rng.randrange(0, 9)  # a chunk header between payloads, sometimes none
    return [(start, size) for start, size in ranges if size > 0 and start + size <= total]


def _scratch_of(tmp_path: Path, data: bytes) -> LocalScratchFile:
    """A scratch file holding `data`: its whole pages from a page-aligned buffer, as the receive buffers are
    (around the cache), the rest as bytes (through it, not yet written back)."""
    aligned = len(data) - len(data) % mmap.PAGESIZE
    buffer = mmap.mmap(-1, aligned)
    buffer[:] = data[:aligned]
    scratch = LocalObjectStore(tmp_path / "blobs").scratch()
    scratch.write(memoryview(buffer))
    scratch.write(data[aligned:])
    return scratch


def test_a_scratch_file_written_around_the_cache_is_read_back_around_it_by_windows(tmp_path: Path) -> None:
    data = random.Random(11).randbytes(9 * 1024 * 1024 + 4321)  # more than two read-back windows
    scratch = _scratch_of(tmp_path, data)
    try:
        ranges = _chunk_ranges(len(data), 12)
        # Each view is checked before the next is taken: the window is reused.
        pairs = zip(scratch.read_back(ranges), ranges, strict=True)
        assert all(bytes(view) == data[s : s + n] for view, (s, n) in pairs)
        assert cached_pages(scratch.path) <= 2  # the tail's page(s): the rest never entered the cache
    finally:
        scratch.discard()


def test_a_read_back_refused_around_the_cache_goes_through_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = random.Random(13).randbytes(5 * 1024 * 1024)
    scratch = _scratch_of(tmp_path, data)
    refused = []

    def preadv(fd: int, buffers: list[Any], offset: int) -> int:
        refused.append(offset)
        raise OSError(errno.EINVAL, "Invalid argument")  # what a file system that takes no O_DIRECT read says

    through: list[bool] = []  # the reads through the page cache: a descriptor without O_DIRECT
    pread_exact = local._pread_exact

    def pread_through_cache(fd: int, offset: int, size: int) -> bytes:
        through.append(not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)
        return pread_exact(fd, offset, size)

    try:
        ranges = _chunk_ranges(len(data), 14)
        monkeypatch.setattr(local.os, "preadv", preadv)
        monkeypatch.setattr(local, "_pread_exact", pread_through_cache)
        assert [bytes(view) for view in scratch.read_back(ranges)] == [data[s : s + n] for s, n in ranges]
        assert refused == [0]  # asked once, then every range through the cache
        # Seen by the descriptor each range is read through, not by counting cached pages: clean ones may be
        # reclaimed at any moment (this machine's kernel pages out cold-looking page cache on its own).
        assert through == [True] * len(ranges)
    finally:
        scratch.discard()


def test_a_read_back_past_what_was_written_is_an_error(tmp_path: Path) -> None:
    size = 2 * mmap.PAGESIZE
    scratch = _scratch_of(tmp_path, bytes(range(256)) * (size // 256))
    try:
        with pytest.raises(OSError, match="holds no 100 bytes"):
            list(scratch.read_back([(0, 10), (size - 50, 100)]))
    finally:
        scratch.discard()


def test_a_failed_write_nobody_waited_for_fails_the_part_at_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A body that comes as ASGI messages hands the part's writes to worker threads that drop the futures
    # `write` returns: a write that failed and finished before the next one began must still fail the part,
    # not be forgotten with the finished writes.
    store = LocalObjectStore(tmp_path / "blobs")
    part = 1024 * 1024
    data = random.Random(16).randbytes(part)
    upload = store.open_upload("forgotten", hashlib.sha256(data).hexdigest(), len(data), part)
    real_pwrite = os.pwrite

    def pwrite(fd: int, view: Any, offset: int) -> int:
        if offset == 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, view, offset)

    monkeypatch.setattr(local.os, "pwrite", pwrite)
    writer = upload.part_writer(1)
    half = part // 2
    failed = writer.write(data[:half])
    concurrent.futures.wait([failed])  # done, its error unread
    with pytest.raises(OSError, match="No space left"):
        writer.write(data[half:])
    writer.abort()
    assert upload.missing_parts() == [1]


def test_a_large_batch_is_written_by_a_disk_thread_while_it_is_hashed_and_a_failed_write_fails_the_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The receiving thread hashes a batch while a disk thread writes it; `write` returns the write, which may
    # still run (the buffer is reused once it is done), and a failed write fails the part (its future and
    # `finish` raise it), which can be sent again.
    store = LocalObjectStore(tmp_path / "blobs")
    part = 1024 * 1024
    data = random.Random(15).randbytes(2 * part)
    upload = store.open_upload("overlap", hashlib.sha256(data).hexdigest(), len(data), part)
    real_pwrite = os.pwrite
    writers: list[str] = []
    failing = threading.Event()

    def pwrite(fd: int, view: Any, offset: int) -> int:
        writers.append(threading.current_thread().name)
        if failing.is_set() and offset == part:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_pwrite(fd, view, offset)

    monkeypatch.setattr(local.os, "pwrite", pwrite)
    buffer = mmap.mmap(-1, part)
    buffer[:] = data[:part]
    writer = upload.part_writer(1)
    writer.write(memoryview(buffer))
    writer.finish()
    assert writers and all(name.startswith("disk-write") for name in writers)
    failing.set()
    writer = upload.part_writer(2)
    written = writer.write(data[part:])
    with pytest.raises(OSError, match="No space left"):
        written.result()
    with pytest.raises(OSError, match="No space left"):
        writer.finish()
    writer.abort()
    failing.clear()
    writer = upload.part_writer(2)
    writer.write(data[part:])
    writer.finish()
    upload.seal()
    assert upload.digest() == hashlib.sha256(data).hexdigest()
    assert upload._staged.path.read_bytes() == data


def test_a_blob_writer_holds_at_most_its_write_ahead_bytes_for_a_slow_disk(tmp_path: Path) -> None:
    # The disk thread writes into a pipe nobody reads yet: it blocks on its first piece, as on a disk that
    # lags. The caller must then wait instead of queueing copies of every piece it is given (a whole copy
    # rebuilt from xorbs hands 8 MiB windows; four queued and two beside them held 48 MiB).
    store = LocalObjectStore(tmp_path / "blobs")
    writer = store.blob_writer()
    read_end, write_end = os.pipe()
    writer._file.close()
    writer._file = open(write_end, "wb", buffering=0)  # noqa: SIM115 - closed by the writer
    piece = random.Random(5).randbytes(3 * 1024 * 1024)
    pieces = 20  # 60 MiB in all, far beyond the bound
    held: list[int] = []
    written = threading.Event()

    def write_all() -> None:
        for _ in range(pieces):
            writer.write(piece)
            held.append(writer.held)
        written.set()

    thread = threading.Thread(target=write_all, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not held:  # bounded: on a busy machine the thread may not have run yet
        assert time.monotonic() < deadline, "the writer took no piece"
        time.sleep(0.01)
    time.sleep(0.5)  # time for a writer without its bound to run past it
    assert not written.is_set()  # the writer waits for the disk
    assert held and max(held) <= local.WRITE_AHEAD_BYTES
    waiting_at = len(held)
    received = hashlib.sha256()
    with open(read_end, "rb", buffering=0) as reader:
        left = pieces * len(piece)
        while left:
            chunk = reader.read(min(left, 1024 * 1024))  # a pipe hands 64 KiB at a time
            assert chunk, "the writer stopped before its last piece"
            received.update(chunk)
            left -= len(chunk)
        thread.join(timeout=30)
        thread_done = written.is_set()
        writer.abort()  # the disk thread has written everything: abort only closes the pipe
        assert reader.read() == b""
    assert thread_done and len(held) == pieces > waiting_at
    assert max(held) <= local.WRITE_AHEAD_BYTES
    assert received.hexdigest() == hashlib.sha256(piece * pieces).hexdigest()


def test_a_blob_writer_lets_one_piece_larger_than_its_bound_through(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "blobs")
    writer = store.blob_writer()
    data = random.Random(6).randbytes(local.WRITE_AHEAD_BYTES + 4096)
    writer.write(data)
    writer.write(data)
    assert writer.seal().sha256 == hashlib.sha256(data + data).hexdigest()
    writer.publish()

"""The sha256 of a file as `push` computes it, in a module of its own: `push` starts it before it imports the
transfer code (`cli/transfer.py`, `http.client`), which then loads while the file is being read."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Reads for hashing and for sending: large enough that per-call overhead vanishes, small enough that the
# buffers in flight (two for hashing, one per part in flight) stay a few tens of MB.
READ_SIZE = 8 * 1024 * 1024

Advance = Callable[[int], object]


def sha256_of_file(path: Path, advance: Advance) -> str:
    """The sha256 of the file at `path`, reading the next 8 MiB while the current 8 MiB are hashed (both
    release the GIL), and calling `advance` with each count of bytes hashed."""
    digest = hashlib.sha256()
    buffers = [bytearray(READ_SIZE), bytearray(READ_SIZE)]
    fd = os.open(path, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError, AttributeError):
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash-read") as reader:
            current, offset = 0, 0
            pending = reader.submit(os.preadv, fd, [buffers[current]], offset)
            while count := pending.result():
                offset += count
                pending = reader.submit(os.preadv, fd, [buffers[1 - current]], offset)
                digest.update(memoryview(buffers[current])[:count])
                advance(count)
                current = 1 - current
    finally:
        os.close(fd)
    return digest.hexdigest()

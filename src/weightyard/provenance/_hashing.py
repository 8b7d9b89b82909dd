"""Walking a model folder and hashing its files at the speed of the machine's sha256."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Iterable
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from pathlib import Path

from weightyard.provenance._paths import matching_ignore
from weightyard.provenance.errors import UnreadableModel

# Reads of 1 MiB into two alternating buffers: the next block is read (a copy out of the page cache, or a
# wait on the disk) in a reader thread while the hashing thread hashes the previous block, so the copy
# overlaps the hash instead of adding to it. Small buffers stay in the CPU cache from the copy to the hash.
READ_BUFFER_BYTES = 1024 * 1024
# sha256 of one file is sequential, but hashlib releases the GIL, so separate files hash on separate cores.
HASH_WORKERS = os.cpu_count() or 1


class _Buffers(threading.local):
    """One pair of read buffers per hashing thread, reused from file to file."""

    def __init__(self) -> None:
        self.pair = (bytearray(READ_BUFFER_BYTES), bytearray(READ_BUFFER_BYTES))


def _sha256_file(path: Path, reader: Executor, buffers: _Buffers) -> str:
    # O_NOFOLLOW: a file swapped for a symlink after the walk must not let the hash read outside the model.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as error:
        raise UnreadableModel(f"cannot read {path}: {error.strerror}") from error
    with open(fd, "rb", buffering=0) as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnreadableModel(f"{path} is not a regular file")
        # Measured on the development machines: doubles cold read+hash throughput (0.5 -> 1.1 GB/s).
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        digest = hashlib.sha256()
        pair, index = buffers.pair, 0
        pending = reader.submit(file.readinto, pair[index])
        try:
            while count := pending.result():
                ready = pair[index]
                index ^= 1
                pending = reader.submit(file.readinto, pair[index])
                digest.update(memoryview(ready)[:count])
        except OSError as error:
            raise UnreadableModel(f"cannot read {path}: {error.strerror}") from error
        finally:
            # The reader must be done with the file before it is closed (and its descriptor reused).
            wait([pending])
    return digest.hexdigest()


def _size(path: Path) -> int:
    try:
        return path.lstat().st_size
    except OSError:
        return 0  # hashing it will report the problem


def sha256_files(root: Path, names: Iterable[str]) -> dict[str, str]:
    """Hex sha256 of each named regular file under `root`, several files at once on several cores."""
    listed = list(names)
    workers = max(1, min(HASH_WORKERS, len(listed)))
    buffers = _Buffers()
    # Largest first, so that a big file does not start last and finish alone.
    largest_first = sorted(listed, key=lambda name: _size(root / name), reverse=True)
    # Each hashing thread has at most one read pending, so `workers` readers can never be all busy and block.
    with (
        ThreadPoolExecutor(workers, thread_name_prefix="weightyard-read") as reader,
        ThreadPoolExecutor(workers, thread_name_prefix="weightyard-hash") as hasher,
    ):
        digests = {name: hasher.submit(_sha256_file, root / name, reader, buffers) for name in largest_first}
        return {name: digests[name].result() for name in listed}


def walk_model(root: Path, ignore_paths: Iterable[str]) -> tuple[list[str], list[str]]:
    """List the regular files of a model folder as POSIX paths relative to `root`.

    Returns `(files, ignored)`: the files to hash, and the ignore entries that matched something
    (a folder as `name/`). Ignored folders are not descended into. Symlinks and special files are refused,
    because hashing through them could read outside the folder or block forever.
    """
    if not root.is_dir():
        raise UnreadableModel(f"{root} is not a folder")
    entries = frozenset(ignore_paths)
    files: list[str] = []
    ignored: list[str] = []
    pending = [""]
    while pending:
        prefix = pending.pop()
        try:
            with os.scandir(root / prefix if prefix else root) as scan:
                children = list(scan)
        except OSError as error:
            raise UnreadableModel(f"cannot list {root / prefix}: {error.strerror}") from error
        for child in children:
            name = f"{prefix}{child.name}"
            is_dir = child.is_dir(follow_symlinks=False)
            if matching_ignore(name, entries) is not None:
                ignored.append(f"{name}/" if is_dir else name)
            elif child.is_symlink():
                raise UnreadableModel(f"{name} is a symlink; only regular files can be signed")
            elif is_dir:
                pending.append(f"{name}/")
            elif child.is_file(follow_symlinks=False):
                files.append(name)
            else:
                raise UnreadableModel(f"{name} is not a regular file")
    return sorted(files), sorted(ignored)

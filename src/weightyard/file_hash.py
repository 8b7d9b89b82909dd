"""The sha256 of a file as `weightyard push` computes it, and the hashes a push begins before the CLI loads.

This module is outside `weightyard.cli`, so that the command's entry point (`weightyard.launch`) can import it
before the CLI itself (typer, rich and the command modules: about 0.2 s on one core, while the other core has
nothing to do). For `weightyard push DIR …` the entry point begins hashing the folder's files at once
(`start_early`), in the order `push` sends them, and `push` takes those hashes over (`take_early`) instead
of beginning its own. It is the same hash begun earlier: a file whose size or modification time changed in
between is hashed anew by `push`, and the transfer still compares the file's state before and after it is
sent. A push that ends before it took them stops them (`stop_early`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

# Reads for hashing and for sending: large enough that per-call overhead vanishes, small enough that the
# buffers in flight (two for hashing, one per part in flight) stay a few tens of MB.
READ_SIZE = 8 * 1024 * 1024
# Folders of a local download that `push` leaves out: they describe the download, not the model.
SKIPPED_DIRS = frozenset({".git", ".cache"})

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


def folder_files(folder: Path) -> list[Path]:
    """The files `push` sends from `folder`, in the order it sends them."""
    return [
        path
        for path in sorted(folder.rglob("*"))
        if path.relative_to(folder).parts[0] not in SKIPPED_DIRS and path.is_file()
    ]


class EarlyHashStopped(Exception):
    """The hash begun early of a file that no push took."""


def _state(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_size, status.st_mtime_ns


class _Early:
    """The hash of one file begun early: its future, and the bytes hashed before a push took it."""

    def __init__(self, state: tuple[int, int]) -> None:
        self.state = state
        self.digest: Future[str] = Future()
        self.hashed = 0
        self.advance: Advance | None = None


class _EarlyRun:
    """The files of one `push DIR`, hashed in turn by a daemon thread (the process never waits for it)."""

    def __init__(self, entries: dict[Path, _Early]) -> None:
        self.entries = entries
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        for path, entry in list(self.entries.items()):
            if self.stop.is_set():
                entry.digest.set_exception(EarlyHashStopped(str(path)))
                continue
            try:
                entry.digest.set_result(sha256_of_file(path, functools.partial(self._progress, entry)))
            except BaseException as exc:  # handed to whoever took the hash
                entry.digest.set_exception(exc)

    def _progress(self, entry: _Early, count: int) -> None:
        if self.stop.is_set():
            raise EarlyHashStopped
        with self.lock:
            advance = entry.advance
            if advance is None:
                entry.hashed += count
                return
        advance(count)


def _abandoned(count: int) -> None:
    raise EarlyHashStopped


_current: _EarlyRun | None = None


def start_early(argv: Sequence[str]) -> None:
    """Begin hashing the files of the folder of `weightyard push DIR …` (`argv` as in `sys.argv`), where the
    command's first argument is an existing folder; nothing otherwise (an option first, another command)."""
    global _current
    if len(argv) < 3 or argv[1] != "push" or argv[2].startswith("-"):
        return
    folder = Path(argv[2])
    try:
        if not folder.is_dir():
            return
        entries = {path: _Early(_state(path)) for path in folder_files(folder)}
    except Exception:  # push lists the folder again, and reports what is wrong with it
        return
    if not entries:
        return
    stop_early()
    _current = _EarlyRun(entries)
    threading.Thread(target=_current.run, name="early-hash", daemon=True).start()


def take_early(path: Path, advance: Advance) -> Future[str] | None:
    """The hash of `path` begun early, `advance` called with the bytes it has hashed so far and from then on;
    None where none was begun, or the file's size or modification time changed since it was."""
    run = _current
    if run is None:
        return None
    with run.lock:
        entry = run.entries.pop(path, None)
    if entry is None:
        return None
    try:
        unchanged = _state(path) == entry.state
    except OSError:
        unchanged = False
    if not unchanged:
        with run.lock:
            entry.advance = _abandoned  # the old content's hash ends at its next 8 MiB
        return None
    with run.lock:
        done, entry.hashed, entry.advance = entry.hashed, 0, advance
    if done:
        advance(done)
    return entry.digest


def stop_early() -> None:
    """Stop the hashes begun early (those not taken end at their next 8 MiB; those taken, too)."""
    global _current
    run, _current = _current, None
    if run is not None:
        run.stop.set()

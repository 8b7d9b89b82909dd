"""The blob store interface: content addressed by sha256, written atomically."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class BlobInfo:
    sha256: str
    size: int


class BlobWriter(Protocol):
    """A blob being written. Bytes are hashed once, as they stream in; nothing is visible before `commit`."""

    @property
    def size(self) -> int: ...

    def write(self, data: bytes) -> None: ...

    def commit(self, expected_sha256: str | None = None, expected_size: int | None = None) -> BlobInfo:
        """Make the blob visible under its sha256, after checking the expectations and an fsync.

        Raises `ContentMismatch` (and discards the bytes) when an expectation does not hold.
        """
        ...

    def abort(self) -> None:
        """Discard everything written so far. Safe to call more than once, and after `commit`."""
        ...


class BlobStore(Protocol):
    def writer(self) -> BlobWriter: ...

    def exists(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int: ...

    def open(self, sha256: str) -> BinaryIO:
        """A seekable binary stream of the blob; raises `BlobNotFound` when absent."""
        ...

    def iter_range(self, sha256: str, start: int, end: int, chunk_size: int) -> Iterator[memoryview]:
        """The bytes [start, end) of the blob, in chunks of at most `chunk_size`."""
        ...

    def delete(self, sha256: str) -> None: ...

    def adopt(self, written: Path, blob: BlobInfo) -> None:
        """Make `written`, a complete file in the store's temporary folder whose content the caller has
        checked is `blob`, visible under its sha256 (after an fsync), taking the file over."""
        ...

    def check_stored(self, sha256: str, size: int) -> None:
        """Raise `StoredContentMissing` or `StoredContentDamaged` unless all `size` bytes are stored."""
        ...


def check_sha256(sha256: str) -> str:
    from weightyard.errors import BadRequest

    if not SHA256_RE.match(sha256):
        raise BadRequest(f"not a sha256 hex digest: {sha256[:80]!r}")
    return sha256

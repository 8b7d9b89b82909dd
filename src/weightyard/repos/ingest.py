"""Content arriving in a commit body: hashed once while it streams, stored atomically."""

from __future__ import annotations

import hashlib

from weightyard.repos.content import BlobWriter, ContentStore
from weightyard.repos.objects import git_blob_oid
from weightyard.repos.quota import ByteBudget
from weightyard.storage import BlobInfo

_BINARY_SAMPLE = 512


def looks_binary(sample: bytes) -> bool:
    """Whether content starting with `sample` is binary (stored as an LFS file, as on the Hub): it has a
    NUL byte, or is not UTF-8 (a multi-byte character cut off at the end of the sample is fine)."""
    head = sample[:_BINARY_SAMPLE]
    if b"\0" in head:
        return True
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 3
    return False


class IngestedContent:
    def __init__(self, blob: BlobInfo, git_sha1: str | None, sample: bytes) -> None:
        self.blob = blob
        self.git_sha1 = git_sha1
        self.sample = sample


class ContentIngest:
    """Keeps content in memory up to `memory_limit` bytes (so its git blob id can be computed without a
    second pass), then spills to a streaming blob writer. Memory stays bounded for any size. With a
    `budget` (the repo's quota), content past it is refused before it is kept."""

    def __init__(self, store: ContentStore, memory_limit: int, budget: ByteBudget | None = None) -> None:
        self._store = store
        self._budget = budget
        self._limit = memory_limit
        self._buffer = bytearray()
        self._writer: BlobWriter | None = None
        self._sample = b""

    def write(self, data: bytes) -> None:
        if self._budget is not None:
            self._budget.take(len(data))
        if len(self._sample) < _BINARY_SAMPLE:
            self._sample += data[: _BINARY_SAMPLE - len(self._sample)]
        if self._writer is None:
            self._buffer += data
            if len(self._buffer) > self._limit:
                self._writer = self._store.writer()
                self._writer.write(bytes(self._buffer))
                self._buffer = bytearray()
        else:
            self._writer.write(data)

    def finish(self) -> IngestedContent:
        if self._writer is not None:
            return IngestedContent(self._writer.commit(), None, self._sample)
        data = bytes(self._buffer)
        sha256 = hashlib.sha256(data).hexdigest()
        if not self._store.exists(sha256):
            writer = self._store.writer()
            writer.write(data)
            writer.commit(expected_sha256=sha256)
        return IngestedContent(BlobInfo(sha256=sha256, size=len(data)), git_blob_oid(data), self._sample)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
        self._buffer = bytearray()

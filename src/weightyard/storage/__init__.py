"""Content-addressed blob storage, chosen by URL (`file://…`; object storage comes later)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from weightyard.errors import BadRequest
from weightyard.storage.base import SHA256_RE, BlobInfo, BlobStore, BlobWriter, check_sha256
from weightyard.storage.local import LocalBlobStore

__all__ = [
    "SHA256_RE",
    "BlobInfo",
    "BlobStore",
    "BlobWriter",
    "LocalBlobStore",
    "check_sha256",
    "open_blob_store",
]


def open_blob_store(url: str) -> LocalBlobStore:
    """Open the store named by `url`.

    Example:
        >>> store = open_blob_store("file:///tmp/weightyard-doc/blobs")
    """
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(parsed.path))
    raise BadRequest(f"unsupported blob store URL scheme {parsed.scheme!r} (supported: file://)")

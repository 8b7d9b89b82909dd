"""Bytes by key: the `ObjectStore` interface (storage/base.py) and its implementations, chosen by URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from weightyard.errors import BadRequest
from weightyard.storage.base import (
    BLOBS,
    SHA256_RE,
    XORBS,
    BlobInfo,
    Namespace,
    ObjectStore,
    ObjectWriter,
    PartWriter,
    ScratchFile,
    StagedUpload,
    StoredObject,
    check_sha256,
    unfinished,
    wait_all,
)
from weightyard.storage.local import LocalObjectStore

__all__ = [
    "BLOBS",
    "SHA256_RE",
    "XORBS",
    "BlobInfo",
    "LocalObjectStore",
    "Namespace",
    "ObjectStore",
    "ObjectWriter",
    "PartWriter",
    "ScratchFile",
    "StagedUpload",
    "StoredObject",
    "check_sha256",
    "open_object_store",
    "unfinished",
    "wait_all",
]


def open_object_store(url: str, xorb_root: Path) -> ObjectStore:
    """The object store named by `url`: `file://PATH` (or `xet://PATH`) keeps blobs in PATH and xorbs in
    `xorb_root`; `s3://BUCKET/PREFIX?endpoint_url=…&region=…` keeps both in the bucket (credentials from the
    `AWS_*` variables), its scratch files beside `xorb_root`.

    Example:
        >>> store = open_object_store("file:///tmp/weightyard-doc/blobs", Path("/tmp/weightyard-doc/xorbs"))
    """
    parsed = urlparse(url)
    if parsed.scheme in ("file", "xet"):
        return LocalObjectStore(Path(parsed.path), xorb_root)
    if parsed.scheme == "s3":
        return _open_s3(url, xorb_root.parent / "s3-scratch")
    raise BadRequest(
        f"unsupported blob store URL scheme {parsed.scheme!r} (supported: file://, xet://, s3://)"
    )


def _open_s3(url: str, scratch_dir: Path) -> ObjectStore:
    """`s3://BUCKET/PREFIX?endpoint_url=…&region=…`: blobs and xorbs in the bucket, scratch files (requests
    spooled before they are verified) in `scratch_dir`. Its clients come with the `scale` extra."""
    try:
        from weightyard.storage.s3 import S3Location, S3ObjectStore
    except ImportError as exc:
        raise BadRequest(f"an s3:// blob store needs `pip install 'weightyard[scale]'` ({exc})") from None
    return S3ObjectStore(S3Location.parse(url), scratch_dir)

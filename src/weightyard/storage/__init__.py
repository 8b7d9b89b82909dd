"""Content-addressed blob storage, chosen by URL (`file://…`, `xet://…`; object storage comes later)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import sqlalchemy as sa

from weightyard.errors import BadRequest
from weightyard.storage.base import (
    BLOBS,
    SHA256_RE,
    XORBS,
    BlobInfo,
    BlobStore,
    BlobWriter,
    Namespace,
    ObjectStore,
    ObjectWriter,
    PartWriter,
    ScratchFile,
    StagedUpload,
    StoredObject,
    check_sha256,
)
from weightyard.storage.local import LocalBlobStore, LocalObjectStore, StagedBlob, StagedPartWriter
from weightyard.storage.xet import XetBlobStore, XetFile

__all__ = [
    "BLOBS",
    "SHA256_RE",
    "XORBS",
    "BlobInfo",
    "BlobStore",
    "BlobWriter",
    "LocalBlobStore",
    "LocalObjectStore",
    "Namespace",
    "ObjectStore",
    "ObjectWriter",
    "PartWriter",
    "ScratchFile",
    "StagedBlob",
    "StagedPartWriter",
    "StagedUpload",
    "StoredObject",
    "XetBlobStore",
    "XetFile",
    "check_sha256",
    "open_blob_store",
    "open_object_store",
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


def open_blob_store(
    url: str, engine: sa.Engine | None = None, xorb_root: Path | None = None
) -> LocalBlobStore | XetBlobStore:
    """Open the store named by `url`; with an engine and a xorb folder, a `XetBlobStore` around it.

    `xet://PATH` keeps whole blobs in PATH like `file://PATH` and packs every new upload into xorbs.

    Example:
        >>> store = open_blob_store("file:///tmp/weightyard-doc/blobs")
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("file", "xet"):
        raise BadRequest(f"unsupported blob store URL scheme {parsed.scheme!r} (supported: file://, xet://)")
    base = LocalBlobStore(Path(parsed.path), engine)
    if engine is None or xorb_root is None:
        if parsed.scheme == "xet":
            raise BadRequest("a xet:// blob store needs the hub's database")
        return base
    return XetBlobStore(base, xorb_root, engine, pack=parsed.scheme == "xet")

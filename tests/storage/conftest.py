"""The `object_store` fixture: every `ObjectStore` implementation the contract tests run against."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightyard.storage import LocalObjectStore, ObjectStore


@pytest.fixture(params=["file", "s3"])
def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A fresh, empty store of each kind (`file`: a local folder; `s3`: a prefix of its own in the session's
    SeaweedFS bucket)."""
    if request.param == "s3":
        from weightyard.storage.s3 import S3Location, S3ObjectStore

        url: str = request.getfixturevalue("s3_url")
        return S3ObjectStore(S3Location.parse(url), tmp_path / "scratch")
    return LocalObjectStore(tmp_path / "blobs", tmp_path / "xorbs")

"""The `object_store` fixture: every `ObjectStore` implementation the contract tests run against."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightyard.storage import LocalObjectStore, ObjectStore


@pytest.fixture(params=["file"])
def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    """A fresh, empty store of each kind (`file`: a local folder)."""
    assert request.param == "file"
    return LocalObjectStore(tmp_path / "blobs", tmp_path / "xorbs")

"""A staged upload in a local folder, used by several server processes at once (`serve --workers N`): each
process has its own `LocalObjectStore` on the same folder, as two stores here do. Sealing the upload for
completion in one must stop the part writers of all of them, or a part written after the digest was checked
would change the published blob.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from weightyard.errors import ContentMismatch, NotFound
from weightyard.storage import BLOBS, BlobInfo, LocalObjectStore

PART = 100_000
DATA = os.urandom(2 * PART)
SHA = hashlib.sha256(DATA).hexdigest()


def _write(store: LocalObjectStore, number: int, data: bytes) -> None:
    writer = store.open_upload("u1", SHA, len(DATA), PART).part_writer(number)
    writer.write(data)
    writer.finish()


def test_a_part_being_written_by_another_process_holds_off_the_seal(tmp_path: Path) -> None:
    completing = LocalObjectStore(tmp_path / "blobs", tmp_path / "xorbs")
    other = LocalObjectStore(tmp_path / "blobs", tmp_path / "xorbs")
    _write(other, 1, DATA[:PART])
    writing = other.open_upload("u1", SHA, len(DATA), PART).part_writer(2)
    writing.write(DATA[PART : PART + 10])
    upload = completing.open_upload("u1", SHA, len(DATA), PART)

    with pytest.raises(ContentMismatch, match="still being written"):
        upload.seal()

    writing.write(DATA[PART + 10 :])
    writing.finish()
    upload.seal()
    assert upload.missing_parts() == []
    assert upload.digest() == SHA


def test_no_process_writes_a_part_once_the_upload_is_sealed(tmp_path: Path) -> None:
    completing = LocalObjectStore(tmp_path / "blobs", tmp_path / "xorbs")
    other = LocalObjectStore(tmp_path / "blobs", tmp_path / "xorbs")
    _write(other, 1, DATA[:PART])
    _write(other, 2, DATA[PART:])
    late = other.open_upload("u1", SHA, len(DATA), PART)
    upload = completing.open_upload("u1", SHA, len(DATA), PART)
    upload.seal()

    with pytest.raises(NotFound, match="being completed"):
        late.part_writer(2)

    assert upload.digest() == SHA
    assert upload.publish(BlobInfo(SHA, len(DATA))) is True
    with completing.open(BLOBS, SHA) as stored:
        assert stored.read() == DATA

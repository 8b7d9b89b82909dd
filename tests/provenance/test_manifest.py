from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from weightyard.provenance import (
    GIT_PATHS,
    InvalidManifest,
    Manifest,
    UnreadableModel,
    manifest_from_digests,
    manifest_from_folder,
)
from weightyard.provenance._hashing import READ_BUFFER_BYTES

from ._support import MODEL_FILES, write_model


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_folder_manifest_holds_the_plain_sha256_of_every_file_but_git_metadata(model_dir: Path) -> None:
    manifest = manifest_from_folder(model_dir)

    expected = {name: _sha256(content) for name, content in MODEL_FILES.items() if name != ".gitattributes"}
    assert dict(manifest.files) == expected
    assert manifest.model_name == "tiny-model"
    assert set(GIT_PATHS) <= set(manifest.ignore_paths)


def test_manifest_files_are_sorted_by_code_point_not_by_path_components(model_dir: Path) -> None:
    names = list(manifest_from_folder(model_dir).files)

    assert names == sorted(names)
    assert names.index("a-b.txt") < names.index("a/b.txt")


def test_root_digest_is_sha256_over_the_raw_file_digests_in_order(model_dir: Path) -> None:
    manifest = manifest_from_folder(model_dir)

    concatenated = b"".join(bytes.fromhex(digest) for digest in manifest.files.values())
    assert manifest.root_digest == _sha256(concatenated)


def test_git_paths_are_ignored_only_at_the_model_root(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", {"w.bin": b"w", ".git/config": b"c", "sub/.gitattributes": b"g"})

    assert sorted(manifest_from_folder(folder).files) == ["sub/.gitattributes", "w.bin"]


def test_signature_file_and_chosen_paths_are_left_out(tmp_path: Path) -> None:
    folder = write_model(
        tmp_path / "m", {"w.bin": b"w", "model.sig": b"{}", "README.md": b"r", "docs/x": b"x"}
    )

    manifest = manifest_from_folder(folder, ignore=["model.sig", "README.md", "docs/"])

    assert list(manifest.files) == ["w.bin"]
    assert {"model.sig", "README.md", "docs"} <= set(manifest.ignore_paths)


def test_file_spanning_several_read_buffers_hashes_like_hashlib(tmp_path: Path) -> None:
    content = os.urandom(3 * READ_BUFFER_BYTES + 12345)
    folder = write_model(tmp_path / "m", {"big.bin": content, "empty.bin": b""})

    manifest = manifest_from_folder(folder)

    assert manifest.files == {"big.bin": _sha256(content), "empty.bin": _sha256(b"")}


def test_digest_manifest_leaves_out_ignored_names_like_the_folder_one(model_dir: Path) -> None:
    known = {name: _sha256(content) for name, content in MODEL_FILES.items()}
    known["model.sig"] = _sha256(b"an older signature")

    from_digests = manifest_from_digests(known, model_name="tiny-model")

    assert from_digests == manifest_from_folder(model_dir)


def test_uppercase_digests_are_normalised_to_lowercase() -> None:
    digest = _sha256(b"x")

    manifest = manifest_from_digests({"x.bin": digest.upper()}, model_name="m")

    assert manifest.files == {"x.bin": digest}


@pytest.mark.parametrize(
    "name", ["../escape.bin", "/etc/passwd", "a/../../b", "a//b", "./a", "a\\b", "a\x00b", ""]
)
def test_manifest_refuses_a_name_that_is_not_a_clean_relative_path(name: str) -> None:
    with pytest.raises(InvalidManifest):
        manifest_from_digests({name: _sha256(b"x")}, model_name="m")


@pytest.mark.parametrize("digest", ["", "abc", "g" * 64, "0" * 63, "0" * 65])
def test_manifest_refuses_a_value_that_is_not_a_sha256(digest: str) -> None:
    with pytest.raises(InvalidManifest):
        Manifest(model_name="m", files={"x.bin": digest})


def test_manifest_refuses_an_ignore_path_escaping_the_folder() -> None:
    with pytest.raises(InvalidManifest):
        manifest_from_digests({}, model_name="m", ignore=["../outside"])


def test_symlink_in_the_folder_is_refused(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", {"w.bin": b"w"})
    (tmp_path / "secret").write_bytes(b"outside the model")
    (folder / "link.bin").symlink_to(tmp_path / "secret")

    with pytest.raises(UnreadableModel, match="symlink"):
        manifest_from_folder(folder)


def test_fifo_in_the_folder_is_refused_instead_of_blocking(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "m", {"w.bin": b"w"})
    os.mkfifo(folder / "pipe")

    with pytest.raises(UnreadableModel, match="not a regular file"):
        manifest_from_folder(folder)


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnreadableModel):
        manifest_from_folder(tmp_path / "absent")


def test_many_files_of_mixed_sizes_hash_like_hashlib_whatever_order_they_finish_in(tmp_path: Path) -> None:
    files = {f"shard-{index:02d}.bin": os.urandom(index * READ_BUFFER_BYTES // 3) for index in range(24)}
    folder = write_model(tmp_path / "m", files)

    manifest = manifest_from_folder(folder)

    assert manifest.files == {name: _sha256(content) for name, content in sorted(files.items())}

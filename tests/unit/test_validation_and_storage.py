"""The one validator, and the blob store's atomicity."""

from __future__ import annotations

import hashlib
import mmap
import os
import random
from pathlib import Path

import pytest

from weightyard.errors import ContentMismatch, InvalidPath, InvalidRefName, InvalidRepoId
from weightyard.storage import LocalBlobStore
from weightyard.validation import check_path, check_ref_name, check_repo_id, check_repo_segment

# One of each class of character that shows as something other than itself (or as nothing): bidirectional
# overrides, embeddings and isolates, zero-width characters, separators, odd spaces, soft hyphen, BOM,
# C1 controls, private use, unassigned, and glyphs that render blank.
INVISIBLE = [
    "\u202e",  # right-to-left override: `a/\u202etxt.exe` shows as `a/exe.txt`
    "\u202d",
    "\u202a",
    "\u2066",  # left-to-right isolate
    "\u2069",  # pop directional isolate
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\u200e",  # left-to-right mark
    "\u2060",  # word joiner
    "\ufeff",  # byte order mark
    "\u00ad",  # soft hyphen
    "\u2028",  # line separator
    "\u2029",  # paragraph separator
    "\u00a0",  # no-break space
    "\u3000",  # ideographic space
    "\u0085",  # next line (C1 control)
    "\ue000",  # private use
    "\U000e0001",  # language tag
    "\u0378",  # unassigned
    "\u3164",  # Hangul filler
    "\u2800",  # braille blank
    "\ufe0f",  # variation selector
    "\u034f",  # combining grapheme joiner
]


@pytest.mark.parametrize(
    "path", ["a", "a/b.txt", "1_Pooling/config.json", ".gitattributes", "é/ü.bin", "x" * 1024]
)
def test_valid_paths_pass(path: str) -> None:
    assert check_path(path) == path


@pytest.mark.parametrize(
    "path", ["", "/a", "../a", "a/../b", "a//b", "a/", "./a", "a\\b", "a\x00", "a\nb", "\x7f", "x" * 1025]
)
def test_invalid_paths_are_rejected(path: str) -> None:
    with pytest.raises(InvalidPath):
        check_path(path)


@pytest.mark.parametrize("char", INVISIBLE, ids=[f"U+{ord(c):04X}" for c in INVISIBLE])
def test_invisible_characters_are_refused_in_paths_refs_and_repo_ids(char: str) -> None:
    with pytest.raises(InvalidPath, match=f"invisible or control character \\(U\\+{ord(char):04X}"):
        check_path(f"a/{char}txt.exe")
    with pytest.raises(InvalidRefName, match="invisible"):
        check_ref_name(f"release{char}1")
    with pytest.raises(InvalidRepoId):
        check_repo_id(f"alice/model{char}")
    with pytest.raises(InvalidRepoId):
        check_repo_segment(f"alice{char}", "namespace")


def test_a_repo_id_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(InvalidRepoId):
        check_repo_id("alice/model\n")


@pytest.mark.parametrize("repo_id", ["alice/tiny", "Org.1/model_v2-final", "a/" + "b" * 96])
def test_valid_repo_ids_pass(repo_id: str) -> None:
    assert "/".join(check_repo_id(repo_id)) == repo_id


@pytest.mark.parametrize(
    "repo_id", ["alice", "a/b/c", "a/b--c", "a/b..c", "-a/b", "a/.b", "a/b c", "a/" + "b" * 97, "a/x.git"]
)
def test_invalid_repo_ids_are_rejected(repo_id: str) -> None:
    with pytest.raises(InvalidRepoId):
        check_repo_id(repo_id)


@pytest.mark.parametrize("name", ["main", "dev", "feature/x", "v1.0", "release-2026.11"])
def test_valid_ref_names_pass(name: str) -> None:
    assert check_ref_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a..b",
        "a b",
        "a~b",
        "a^b",
        "a:b",
        "a?b",
        "a*b",
        "a[b",
        "a\\b",
        "/a",
        "a/",
        "a//b",
        ".a",
        "a.lock",
        "a.",
        "@",
        "a@{b",
        "-a",
        "0" * 40,
    ],
)
def test_invalid_ref_names_are_rejected(name: str) -> None:
    with pytest.raises(InvalidRefName):
        check_ref_name(name)


def test_blob_becomes_visible_only_after_commit(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    data = b"weights" * 100_000
    sha = hashlib.sha256(data).hexdigest()
    writer = store.writer()
    writer.write(data[:1000])
    writer.write(data[1000:])
    assert not store.exists(sha)
    info = writer.commit(expected_sha256=sha, expected_size=len(data))
    assert (info.sha256, info.size) == (sha, len(data))
    assert store.exists(sha)
    assert b"".join(store.iter_range(sha, 5, 25, 7)) == data[5:25]
    assert list((tmp_path / ".tmp").iterdir()) == []


def test_blob_with_wrong_digest_or_size_is_discarded(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    for expectation in ({"expected_sha256": "0" * 64}, {"expected_size": 3}):
        writer = store.writer()
        writer.write(b"data")
        with pytest.raises(ContentMismatch):
            writer.commit(**expectation)  # type: ignore[arg-type]
    assert not store.exists(hashlib.sha256(b"data").hexdigest())
    assert list((tmp_path / ".tmp").iterdir()) == []


def test_aborted_writer_leaves_nothing(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    writer = store.writer()
    writer.write(b"partial")
    writer.abort()
    writer.abort()
    assert list((tmp_path / ".tmp").iterdir()) == []
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_every_range_of_a_blob_reads_back_across_map_windows(tmp_path: Path) -> None:
    # Pieces are memory maps whose windows start on allocation boundaries: ranges starting and ending
    # anywhere, in pieces smaller and larger than a boundary, must give exactly the stored bytes.
    store = LocalBlobStore(tmp_path / "blobs")
    data = random.Random(3).randbytes(3 * mmap.ALLOCATIONGRANULARITY + 123)
    writer = store.writer()
    writer.write(data)
    sha = writer.commit().sha256
    boundary, size = mmap.ALLOCATIONGRANULARITY, len(data)
    for start, end in [(0, size), (1, boundary + 1), (boundary - 1, size), (size - 1, size)]:
        for piece_size in (1000, boundary, 2 * boundary + 7):
            pieces = list(store.iter_range(sha, start, end, piece_size))
            assert b"".join(pieces) == data[start:end], (start, end, piece_size)
            assert all(0 < len(piece) <= piece_size for piece in pieces)


def test_a_blob_cut_short_ends_its_stream_early_instead_of_faulting(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    writer = store.writer()
    writer.write(b"x" * 10_000)
    sha = writer.commit().sha256
    os.truncate(store.path_for(sha), 4000)
    assert b"".join(store.iter_range(sha, 0, 10_000, 3000)) == b"x" * 4000

"""Object ids are git's: checked against the real git binary."""

from __future__ import annotations

import subprocess
from pathlib import Path

from weightyard.repos.objects import (
    FileEntry,
    build_trees,
    commit_object_id,
    git_blob_oid,
    lfs_file_entry,
    lfs_pointer,
)


def git(cwd: Path, *args: str, stdin: bytes | None = None) -> str:
    return (
        subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, check=True)
        .stdout.decode()
        .strip()
    )


def test_blob_and_tree_ids_match_git(tmp_path: Path) -> None:
    files = {
        "config.json": b"{}",
        "1_Pooling/config.json": b'{"pooling": "mean"}',
        "a-b/c.txt": b"x",
        "a.txt": b"y",
    }
    git(tmp_path, "init", "-q")
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
        assert git(tmp_path, "hash-object", name) == git_blob_oid(data)
    git(tmp_path, "add", "-A")
    expected_tree = git(tmp_path, "write-tree")
    entries = {
        name: FileEntry("0" * 64, len(data), False, git_blob_oid(data)) for name, data in files.items()
    }
    root, objects = build_trees(entries)
    assert root == expected_tree
    assert len(objects) == 3


def test_lfs_file_id_is_the_pointer_blob_id(tmp_path: Path) -> None:
    pointer = lfs_pointer("ab" * 32, 1234)
    assert pointer.startswith(b"version https://git-lfs.github.com/spec/v1\n")
    assert lfs_file_entry("ab" * 32, 1234).git_oid == git(tmp_path, "hash-object", "--stdin", stdin=pointer)


def test_empty_tree_is_gits_empty_tree() -> None:
    assert build_trees({})[0] == "4b825dc642cb6eb9a060e54bf8d69288fbee4904"


def test_commit_id_is_deterministic_and_depends_on_every_field() -> None:
    base = ("4b825dc642cb6eb9a060e54bf8d69288fbee4904", None, "alice", 1_700_000_000, "title", "body")
    first = commit_object_id(*base)
    assert first == commit_object_id(*base)
    assert len(first) == 40 and first == first.lower()
    variants = {
        commit_object_id(base[0], "1" * 40, *base[2:]),
        commit_object_id(base[0], None, "bob", *base[3:]),
        commit_object_id(*base[:3], 1_700_000_001, *base[4:]),
        commit_object_id(*base[:4], "other", base[5]),
        commit_object_id(*base[:5], "other body"),
    }
    assert first not in variants and len(variants) == 5

"""Git-compatible object ids for files, trees and commits.

Ids are computed the way git computes them, so a commit id is a 40-hex digest of its content (tree, parent,
author, time, message) and never changes; the tree oid of a folder is shared by every commit that has it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_FILE_MODE = b"100644"
_TREE_MODE = b"40000"


@dataclass(frozen=True)
class FileEntry:
    """A file at a commit. `git_oid` is the git blob id of the content (of the pointer, for LFS files)."""

    sha256: str
    size: int
    lfs: bool
    git_oid: str


@dataclass(frozen=True)
class DirEntry:
    oid: str


def git_object_id(kind: bytes, body: bytes) -> str:
    return hashlib.sha1(b"%s %d\0" % (kind, len(body)) + body, usedforsecurity=False).hexdigest()


def git_blob_oid(data: bytes) -> str:
    """The git blob id of `data`, as `git hash-object` computes it."""
    return git_object_id(b"blob", data)


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def lfs_file_entry(sha256: str, size: int) -> FileEntry:
    return FileEntry(sha256=sha256, size=size, lfs=True, git_oid=git_blob_oid(lfs_pointer(sha256, size)))


def _git_sort_key(item: tuple[str, FileEntry | DirEntry]) -> bytes:
    # git orders a folder as if its name ended with "/"
    name, entry = item
    return name.encode() + (b"/" if isinstance(entry, DirEntry) else b"")


def tree_object(entries: Mapping[str, FileEntry | DirEntry]) -> tuple[str, str]:
    """The git oid of a folder with these direct children, and the body the hub stores for it."""
    ordered = sorted(entries.items(), key=_git_sort_key)
    raw = bytearray()
    stored: list[list[object]] = []
    for name, entry in ordered:
        if isinstance(entry, DirEntry):
            raw += _TREE_MODE + b" " + name.encode() + b"\0" + bytes.fromhex(entry.oid)
            stored.append([name, "d", entry.oid])
        else:
            raw += _FILE_MODE + b" " + name.encode() + b"\0" + bytes.fromhex(entry.git_oid)
            stored.append([name, "f", entry.sha256, entry.size, int(entry.lfs), entry.git_oid])
    return git_object_id(b"tree", bytes(raw)), json.dumps(stored, separators=(",", ":"))


def parse_tree_body(body: str) -> dict[str, FileEntry | DirEntry]:
    children: dict[str, FileEntry | DirEntry] = {}
    for item in json.loads(body):
        if item[1] == "d":
            children[item[0]] = DirEntry(oid=item[2])
        else:
            children[item[0]] = FileEntry(sha256=item[2], size=item[3], lfs=bool(item[4]), git_oid=item[5])
    return children


def build_trees(files: Mapping[str, FileEntry]) -> tuple[str, dict[str, str]]:
    """Every tree object of a snapshot: the root oid and `{oid: body}` for the root and each folder."""
    folders: dict[str, dict[str, FileEntry | DirEntry]] = {"": {}}
    for path, entry in files.items():
        parent, _, name = path.rpartition("/")
        _ensure_folder(folders, parent)
        folders[parent][name] = entry
    objects: dict[str, str] = {}
    # deepest folders first, so each parent sees its children's oids
    for folder in sorted(folders, key=lambda f: f.count("/") + (1 if f else 0), reverse=True):
        oid, body = tree_object(folders[folder])
        objects[oid] = body
        if folder:
            parent, _, name = folder.rpartition("/")
            folders[parent][name] = DirEntry(oid=oid)
        else:
            root = oid
    return root, objects


def _ensure_folder(folders: dict[str, dict[str, FileEntry | DirEntry]], folder: str) -> None:
    while folder not in folders:
        folders[folder] = {}
        folder = folder.rpartition("/")[0]


def commit_object_id(
    tree: str, parent: str | None, author: str, timestamp: int, title: str, message: str
) -> str:
    lines = [f"tree {tree}"]
    if parent:
        lines.append(f"parent {parent}")
    identity = f"{author} <{author}@weightyard> {timestamp} +0000"
    lines += [f"author {identity}", f"committer {identity}", "", title]
    if message:
        lines += ["", message]
    return git_object_id(b"commit", ("\n".join(lines) + "\n").encode())


def folders_of(paths: Iterable[str]) -> set[str]:
    """Every folder that contains one of `paths`, at any depth."""
    result: set[str] = set()
    for path in paths:
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            result.add("/".join(parts[:depth]))
    return result

"""The last commit of every path at every commit, kept at commit time (`tree`/`paths-info` with `expand`).

For each commit an index tree mirrors its file tree: each entry holds the id of the newest commit in the
history that changed that path (for a folder: anything under it) and, for folders, the index tree below.
Index trees are content-addressed like git trees, so a commit stores new objects only along the paths it
changes and shares the rest with its parent: the index grows like the trees do, and a lookup reads one
object per folder on the way down, never the history. Commits made before the index existed have no
entry; paths they last changed are reported without a last commit.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

import sqlalchemy as sa

from weightyard.db import insert_ignore, tables
from weightyard.repos.objects import FileEntry

# name -> (last commit id or None when unknown, index tree of the folder or None for a file)
_Node = dict[str, tuple[str | None, str | None]]


def _parse(body: str) -> _Node:
    return {name: (last, child) for name, (last, child) in json.loads(body).items()}


class _Reader:
    """Index trees by id, each read at most once per use."""

    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self._nodes: dict[str, _Node] = {}

    def node(self, oid: str | None) -> _Node:
        if oid is None:
            return {}
        if oid not in self._nodes:
            body = self._conn.execute(
                sa.select(tables.last_commit_trees.c.body).where(tables.last_commit_trees.c.oid == oid)
            ).scalar()
            self._nodes[oid] = _parse(body) if body is not None else {}
        return self._nodes[oid]


def _folders(path: str) -> Iterable[str]:
    """The folders above `path`, the root ("") included."""
    yield ""
    parts = path.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        yield "/".join(parts[:depth])


def _root_of(conn: sa.Connection, repo_id: int, commit_oid: str) -> str | None:
    clc = tables.commit_last_commits
    value = conn.execute(
        sa.select(clc.c.root).where(clc.c.repo_id == repo_id, clc.c.commit_oid == commit_oid)
    ).scalar()
    return str(value) if value is not None else None


def record(
    conn: sa.Connection,
    repo_id: int,
    commit_oid: str,
    parent_oid: str | None,
    before: Mapping[str, FileEntry],
    after: Mapping[str, FileEntry],
) -> None:
    """Index commit `commit_oid`, whose files are `after`, on top of its parent's index (files `before`)."""
    if _root_of(conn, repo_id, commit_oid) is not None:
        return  # the same commit object, already indexed
    changed = {path for path, entry in after.items() if before.get(path) != entry}
    changed |= {path for path in before if path not in after}
    touched = {folder for path in changed for folder in _folders(path)}
    children: dict[str, dict[str, bool]] = {}
    for path in after:
        parts = path.split("/")
        for depth in range(len(parts)):
            folder = "/".join(parts[:depth])
            children.setdefault(folder, {})[parts[depth]] = depth < len(parts) - 1
    reader = _Reader(conn)
    objects: dict[str, str] = {}

    def build(folder: str, base_oid: str | None) -> str:
        if base_oid is not None and folder not in touched:
            return base_oid
        base = reader.node(base_oid)
        entries: dict[str, tuple[str | None, str | None]] = {}
        for name, is_folder in sorted(children.get(folder, {}).items()):
            path = f"{folder}/{name}" if folder else name
            last, child = base.get(name, (None, None))
            if is_folder:
                entries[name] = (commit_oid if path in touched else last, build(path, child))
            else:
                entries[name] = (commit_oid if path in changed else last, None)
        body = json.dumps(entries, sort_keys=True, separators=(",", ":"))
        oid = hashlib.sha1(body.encode(), usedforsecurity=False).hexdigest()
        objects[oid] = body
        return oid

    base_root = _root_of(conn, repo_id, parent_oid) if parent_oid else None
    root = build("", base_root)
    insert_ignore(
        conn, tables.last_commit_trees, [{"oid": oid, "body": body} for oid, body in objects.items()]
    )
    insert_ignore(
        conn, tables.commit_last_commits, [{"repo_id": repo_id, "commit_oid": commit_oid, "root": root}]
    )


def lookup(conn: sa.Connection, repo_id: int, commit_oid: str, paths: Iterable[str]) -> dict[str, str]:
    """The last commit id of each path at `commit_oid`, for the paths the index knows."""
    root = _root_of(conn, repo_id, commit_oid)
    if root is None:
        return {}
    reader = _Reader(conn)
    found: dict[str, str] = {}
    for path in paths:
        *folders, name = path.split("/")
        node = reader.node(root)
        for segment in folders:
            node = reader.node(node.get(segment, (None, None))[1])
        last = node.get(name, (None, None))[0]
        if last is not None:
            found[path] = last
    return found

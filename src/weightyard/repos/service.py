"""Versioned repositories: repos, refs, commits and trees over the database and the blob store."""

from __future__ import annotations

import datetime
import hashlib
import itertools
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from weightyard.auth import Action, Principal, RepoRef, audit, can, require, require_create_in
from weightyard.config import Settings
from weightyard.content_cache import ContentCache
from weightyard.db import insert_ignore, tables, transaction, utcnow
from weightyard.errors import (
    BadRequest,
    BlobNotFound,
    EntryNotFound,
    NamespaceNotFound,
    ParentCommitMismatch,
    PathConflict,
    PayloadTooLarge,
    RefExists,
    RepoExists,
    RepoNotFound,
    RevisionNotFound,
    StoredContentDamaged,
    UnsafeFile,
    WeightyardError,
)
from weightyard.faults import crash_point
from weightyard.repos import last_commits as last_commit_index
from weightyard.repos.content import ContentStore
from weightyard.repos.copies import WholeCopies
from weightyard.repos.downloads import DownloadCounter
from weightyard.repos.gate import ContentGate
from weightyard.repos.gitattributes import DEFAULT_GITATTRIBUTES, GITATTRIBUTES, MAX_RULES_BYTES, LfsRules
from weightyard.repos.ingest import ContentIngest, IngestedContent, looks_binary
from weightyard.repos.objects import (
    DirEntry,
    FileEntry,
    build_trees,
    commit_object_id,
    folders_of,
    git_blob_oid,
    lfs_file_entry,
    parse_tree_body,
)
from weightyard.repos.quota import ByteBudget, RepoQuota
from weightyard.repos.scanning import POLICIES, ScanService
from weightyard.scan import Verdict
from weightyard.storage import BlobInfo
from weightyard.validation import (
    COMMIT_OID_RE,
    check_folder,
    check_new_repo_name,
    check_path,
    check_ref_name,
    check_repo_segment,
    check_repo_type,
)
from weightyard.zero_copy import SegmentStream

_log = logging.getLogger("weightyard.storage")

DEFAULT_BRANCH = "main"
# As on the Hub, a new repo's history starts with one commit that adds the default `.gitattributes`.
INITIAL_COMMIT_TITLE = "initial commit"
HEADS = "refs/heads/"
TAGS = "refs/tags/"
PULLS = "refs/pr/"
SHORT_OID_RE = re.compile(r"^[0-9a-f]{7,39}$")
_COMMIT_ATTEMPTS = 20
# Lifetime of a presigned download URL: long enough to start the transfer and to resume it after a dropped
# connection (the store checks it when a request starts, not while bytes flow); a later download asks the
# hub again and gets a fresh one.
PRESIGNED_URL_TTL = 600
_TREE_CACHE_SIZE = 4096


@dataclass(frozen=True)
class Repo:
    id: int
    type: str
    namespace: str
    name: str
    private: bool
    created_at: datetime.datetime
    updated_at: datetime.datetime
    downloads: int
    gated: str | None = None
    scan_policy: str | None = None
    created_by: int | None = None
    likes: int = 0

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def ref(self) -> RepoRef:
        return RepoRef(self.type, self.namespace, self.name, self.private, self.gated, self.created_by)


@dataclass(frozen=True)
class Commit:
    oid: str
    parent_oid: str | None
    tree_oid: str
    title: str
    message: str
    author: str
    created_at: datetime.datetime


@dataclass(frozen=True)
class Ref:
    name: str
    target: str
    message: str | None

    @property
    def short_name(self) -> str:
        for prefix in (HEADS, TAGS):
            if self.name.startswith(prefix):
                return self.name[len(prefix) :]
        return self.name


@dataclass(frozen=True)
class TreeItem:
    path: str
    entry: FileEntry | DirEntry


@dataclass(frozen=True)
class LfsFile:
    """An LFS file some commit of a repo names (`list_lfs_files`): its content, one path it had, when the
    content was first stored."""

    sha256: str
    filename: str
    git_oid: str
    size: int
    pushed_at: datetime.datetime


@dataclass(frozen=True)
class AddFile:
    path: str
    sha256: str
    size: int
    lfs: bool


@dataclass(frozen=True)
class DeleteFile:
    path: str


@dataclass(frozen=True)
class DeleteFolder:
    path: str


Operation = AddFile | DeleteFile | DeleteFolder


@dataclass(frozen=True)
class CommitResult:
    commit: Commit
    ref: str
    pull_request: int | None


class _HeadMoved(Exception):
    """Another commit moved the branch between reading its head and updating it."""


@dataclass(frozen=True)
class _NewTree:
    """A commit's files and tree built on top of `base`: the files before and after, the root tree id and
    the tree objects (by oid) the commit adds."""

    base: Commit
    before: dict[str, FileEntry]
    files: dict[str, FileEntry]
    root: str
    objects: dict[str, str]


def _repo_from_row(row: sa.Row[tuple[object, ...]]) -> Repo:
    m = row._mapping
    return Repo(
        id=m["id"],
        type=m["type"],
        namespace=m["namespace"],
        name=m["name"],
        private=bool(m["private"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        downloads=m["downloads"],
        gated=m["gated"],
        scan_policy=m["scan_policy"],
        created_by=m["created_by"],
        likes=m["likes"],
    )


def _commit_from_row(row: sa.Row[tuple[object, ...]], prefix: str = "") -> Commit:
    m = row._mapping
    return Commit(
        oid=m[prefix + "oid"],
        parent_oid=m[prefix + "parent_oid"],
        tree_oid=m[prefix + "tree_oid"],
        title=m[prefix + "title"],
        message=m[prefix + "message"],
        author=m[prefix + "author"],
        created_at=m[prefix + "created_at"],
    )


def _ref_names(revision: str) -> list[str]:
    """The refs a revision may name, in the order they win: a branch before a tag."""
    return [revision] if revision.startswith("refs/") else [HEADS + revision, TAGS + revision]


def delete_namespace_repos(conn: sa.Connection, principal: Principal | None, namespace: str) -> list[str]:
    """Delete every repo of `namespace` (compared case-insensitively) inside the caller's transaction;
    used when a user is deleted together with their repos. Returns the deleted repos' ids. Rows only, as
    for any deleted repo (`weightyard gc` removes the content no repo reaches), so it needs no blob store."""
    rows = conn.execute(
        sa.select(tables.repos.c.id, tables.repos.c.namespace, tables.repos.c.name).where(
            sa.func.lower(tables.repos.c.namespace) == namespace.lower()
        )
    ).all()
    for row in rows:
        _delete_repo_rows(conn, row.id)
        audit.record(conn, principal, "repo.delete", f"{row.namespace}/{row.name}", with_user=True)
    return sorted(f"{row.namespace}/{row.name}" for row in rows)


def _delete_repo_rows(conn: sa.Connection, repo_id: int) -> None:
    conn.execute(sa.delete(tables.refs).where(tables.refs.c.repo_id == repo_id))
    conn.execute(sa.delete(tables.commits).where(tables.commits.c.repo_id == repo_id))
    conn.execute(sa.delete(tables.access_requests).where(tables.access_requests.c.repo_id == repo_id))
    conn.execute(sa.delete(tables.repo_contents).where(tables.repo_contents.c.repo_id == repo_id))
    conn.execute(sa.delete(tables.repo_redirects).where(tables.repo_redirects.c.repo_id == repo_id))
    clc = tables.commit_last_commits
    conn.execute(sa.delete(clc).where(clc.c.repo_id == repo_id))
    conn.execute(sa.delete(tables.repos).where(tables.repos.c.id == repo_id))


def _id_is(table: sa.Table, repo_type: str, namespace: str, name: str) -> list[sa.ColumnElement[bool]]:
    """The condition "this row names repo `namespace/name`", whatever the case (served by a unique index)."""
    return [
        table.c.type == repo_type,
        sa.func.lower(table.c.namespace) == namespace.lower(),
        sa.func.lower(table.c.name) == name.lower(),
    ]


# Every request that names a repo and a revision runs these two (built once: building a statement costs
# more than running it).
_NAMED = (
    tables.repos.c.type == sa.bindparam("type"),
    sa.func.lower(tables.repos.c.namespace) == sa.bindparam("namespace"),
    sa.func.lower(tables.repos.c.name) == sa.bindparam("name"),
)
_REPO_NAMED = sa.select(tables.repos).where(*_NAMED)
_TREE_BODY = sa.select(tables.tree_objects.c.body).where(tables.tree_objects.c.oid == sa.bindparam("oid"))
_REFS_WITH_COMMITS = (
    sa.select(tables.commits, tables.refs.c.name.label("ref_name"))
    .join(
        tables.refs,
        sa.and_(
            tables.refs.c.repo_id == tables.commits.c.repo_id,
            tables.refs.c.target_oid == tables.commits.c.oid,
        ),
    )
    .where(
        tables.refs.c.repo_id == sa.bindparam("repo_id"),
        tables.refs.c.name.in_(sa.bindparam("names", expanding=True)),
    )
)

# The repo by its id (`namespace/name`, any case) with the commit of each ref of `names` it has (a row per
# ref; one row with no ref when it has none): what `get_repo_at` reads in one query.
_AT_PREFIX = "at_"
_REPO_AT_REFS = (
    sa.select(
        tables.repos,
        tables.refs.c.name.label("ref_name"),
        *[column.label(_AT_PREFIX + column.name) for column in tables.commits.c],
    )
    .select_from(
        tables.repos.outerjoin(
            tables.refs,
            sa.and_(
                tables.refs.c.repo_id == tables.repos.c.id,
                tables.refs.c.name.in_(sa.bindparam("names", expanding=True)),
            ),
        ).outerjoin(
            tables.commits,
            sa.and_(
                tables.commits.c.repo_id == tables.refs.c.repo_id,
                tables.commits.c.oid == tables.refs.c.target_oid,
            ),
        )
    )
    .where(*_NAMED)
)


def _delete_redirect(conn: sa.Connection, repo_type: str, namespace: str, name: str) -> None:
    conn.execute(
        sa.delete(tables.repo_redirects).where(*_id_is(tables.repo_redirects, repo_type, namespace, name))
    )


def _check_namespace_exists(conn: sa.Connection, namespace: str) -> None:
    """A repo lives under an existing user or organisation, spelt as they are: a repo in an unclaimed
    namespace would go to whoever later creates a user or organisation by that name."""
    for table in (tables.users, tables.orgs):
        if conn.execute(sa.select(table.c.id).where(table.c.name == namespace)).first():
            return
    for table in (tables.users, tables.orgs):
        spelt = conn.execute(
            sa.select(table.c.name).where(sa.func.lower(table.c.name) == namespace.lower())
        ).scalar()
        if spelt is not None:
            raise NamespaceNotFound(f"no user or organisation named {namespace!r}; did you mean {spelt!r}?")
    raise NamespaceNotFound(f"no user or organisation named {namespace!r}; create that organisation first")


def _move_ref(conn: sa.Connection, repo_id: int, ref_name: str, expected: str, target: str) -> bool:
    """Point a ref at `target` only if it still names `expected` (compare-and-swap); False if it moved."""
    moved = conn.execute(
        sa.update(tables.refs)
        .where(
            tables.refs.c.repo_id == repo_id,
            tables.refs.c.name == ref_name,
            tables.refs.c.target_oid == expected,
        )
        .values(target_oid=target)
    )
    return moved.rowcount == 1


class RepoService:
    """Everything about repositories that the API and the CLI may ask for.

    Example:
        >>> repo = service.create_repo(principal, "model", "alice", "tiny", private=False)  # doctest: +SKIP
        >>> service.resolve(repo, "main").oid  # doctest: +SKIP
        'f0c4…'
    """

    def __init__(self, engine: sa.Engine, store: ContentStore, settings: Settings) -> None:
        self._engine = engine
        self._store = store
        self._settings = settings
        # Parsed tree objects by oid: tree objects never change.
        self._trees: ContentCache[str, dict[str, FileEntry | DirEntry]] = ContentCache(_TREE_CACHE_SIZE)
        self.scans = ScanService(
            engine,
            store,
            workers=settings.scan_workers,
            lease_s=settings.scan_lease,
            sweep_s=settings.scan_sweep,
        )
        self.quota = RepoQuota(engine, settings.max_repo_size, settings.upload_url_ttl)
        # Called with the files a commit adds before it lands: what is derived from content (a rendered card)
        # is stored before any reader can see the commit. An error raised here refuses the commit.
        self.before_commit: list[Callable[[Sequence[AddFile]], None]] = []
        self.gate = ContentGate(engine, self.scans, settings.scan_policy)
        self.downloads = DownloadCounter(engine)
        self.copies = WholeCopies(engine, store, settings.whole_copy_budget, settings.scan_lease)
        # Called inside a commit's transaction, with its files, once the ref has moved: what must land with
        # the commit or not at all (the hub's attestation), so no crash can leave a commit without it.
        self.in_commit: list[Callable[[sa.Connection, Repo, Commit, dict[str, FileEntry]], None]] = []
        # Called with (repo, commit) once a commit has landed, outside its transaction.
        self.after_commit: list[Callable[[Repo, Commit], None]] = []

    # ------------------------------------------------------------------ repos

    def create_repo(
        self, principal: Principal | None, repo_type: str, namespace: str, name: str, private: bool
    ) -> Repo:
        check_repo_type(repo_type)
        check_repo_segment(namespace, "namespace")
        check_new_repo_name(name)
        require_create_in(principal, namespace, f"{namespace}/{name}")
        assert principal is not None
        self._store_default_gitattributes()
        now = utcnow()
        values: dict[str, object] = {
            "type": repo_type,
            "namespace": namespace,
            "name": name,
            "private": private,
            "created_at": now,
            "updated_at": now,
            "downloads": 0,
            "created_by": principal.user_id or None,
        }
        with transaction(self._engine) as conn:
            _check_namespace_exists(conn, namespace)
            # the unique index on the lower-cased id decides, so two racing creations cannot both win
            if not insert_ignore(conn, tables.repos, [values]):
                raise RepoExists(f"You already created this {repo_type} repo: {namespace}/{name}")
            repo_id = conn.execute(
                sa.select(tables.repos.c.id).where(*_id_is(tables.repos, repo_type, namespace, name))
            ).scalar_one()
            # a new repo takes the name from a moved repo's old id
            _delete_redirect(conn, repo_type, namespace, name)
            attributes = self._default_gitattributes(conn)
            initial_files = {GITATTRIBUTES: attributes}
            root, objects = build_trees(initial_files)
            self._store_trees(conn, objects)
            self._index_contents(conn, repo_id, [attributes.sha256])
            oid = commit_object_id(root, None, principal.name, int(now.timestamp()), INITIAL_COMMIT_TITLE, "")
            conn.execute(
                sa.insert(tables.commits).values(
                    repo_id=repo_id,
                    oid=oid,
                    parent_oid=None,
                    tree_oid=root,
                    title=INITIAL_COMMIT_TITLE,
                    message="",
                    author=principal.name,
                    created_at=now,
                )
            )
            last_commit_index.record(conn, repo_id, oid, None, {}, {GITATTRIBUTES: attributes})
            conn.execute(
                sa.insert(tables.refs).values(
                    repo_id=repo_id, name=HEADS + DEFAULT_BRANCH, target_oid=oid, created_at=now
                )
            )
            row = conn.execute(sa.select(tables.repos).where(tables.repos.c.id == repo_id)).one()
            initial = self._commit(conn, _repo_from_row(row), oid)
            assert initial is not None
            for hook in self.in_commit:
                hook(conn, _repo_from_row(row), initial, initial_files)
            audit.record(
                conn, principal, "repo.create", f"{namespace}/{name}", type=repo_type, private=private
            )
        return _repo_from_row(row)

    def _store_default_gitattributes(self) -> None:
        """Store the default `.gitattributes` (again, should gc have freed it) and have it scanned, as every
        file a commit adds is (reads never scan). Outside any transaction: a Xet store records what it packs
        in the database."""
        sha256 = hashlib.sha256(DEFAULT_GITATTRIBUTES).hexdigest()
        if not self._store.exists(sha256):
            writer = self._store.writer()
            try:
                writer.write(DEFAULT_GITATTRIBUTES)
                writer.commit()
            finally:
                writer.abort()
        self.scans.await_scans({GITATTRIBUTES: sha256}, self._settings.scan_wait)

    def _default_gitattributes(self, conn: sa.Connection) -> FileEntry:
        """The entry of the default `.gitattributes`, its blob row added when missing."""
        sha256 = hashlib.sha256(DEFAULT_GITATTRIBUTES).hexdigest()
        git_sha1 = git_blob_oid(DEFAULT_GITATTRIBUTES)
        known = conn.execute(sa.select(tables.blobs.c.sha256).where(tables.blobs.c.sha256 == sha256)).first()
        if known is None:
            conn.execute(
                sa.insert(tables.blobs).values(
                    sha256=sha256, size=len(DEFAULT_GITATTRIBUTES), git_sha1=git_sha1, created_at=utcnow()
                )
            )
        return FileEntry(sha256, len(DEFAULT_GITATTRIBUTES), False, git_sha1)

    def get_repo(
        self,
        principal: Principal | None,
        repo_type: str,
        namespace: str,
        name: str,
        action: Action = Action.READ,
    ) -> Repo:
        """The repo, after checking `principal` may perform `action` on it (else the error to show).

        Ids are compared case-insensitively, and the id a repo had before a move still finds it, as on the
        Hub."""
        with self._engine.connect() as conn:
            named = {"type": repo_type, "namespace": namespace.lower(), "name": name.lower()}
            row = conn.execute(_REPO_NAMED, named).first()
            if row is None:
                row = conn.execute(
                    sa.select(tables.repos)
                    .join(tables.repo_redirects, tables.repo_redirects.c.repo_id == tables.repos.c.id)
                    .where(*_id_is(tables.repo_redirects, repo_type, namespace, name))
                ).first()
        if row is None:
            raise RepoNotFound(f"Repository {namespace}/{name} not found")
        return self._allowed(principal, _repo_from_row(row), action)

    def _allowed(self, principal: Principal | None, repo: Repo, action: Action) -> Repo:
        gate_passed = action is Action.DOWNLOAD and self.gate.gate_passed(principal, repo)
        require(principal, action, repo.ref, gate_passed)
        return repo

    def get_repo_at(
        self,
        principal: Principal | None,
        repo_type: str,
        namespace: str,
        name: str,
        revision: str,
        action: Action = Action.READ,
    ) -> tuple[Repo, Commit]:
        """`get_repo`, then `resolve(repo, revision)`: the same answers and refusals, in the same order, with
        the repo and a branch or tag read in one query (most requests name both)."""
        if COMMIT_OID_RE.match(revision):
            repo = self.get_repo(principal, repo_type, namespace, name, action)
            return repo, self.resolve(repo, revision)
        names = _ref_names(revision)
        with self._engine.connect() as conn:
            rows = conn.execute(
                _REPO_AT_REFS,
                {"type": repo_type, "namespace": namespace.lower(), "name": name.lower(), "names": names},
            ).all()
        if not rows:  # not under this id: perhaps under the one it had before a move
            repo = self.get_repo(principal, repo_type, namespace, name, action)
            return repo, self.resolve(repo, revision)
        repo = self._allowed(principal, _repo_from_row(rows[0]), action)
        found = {row.ref_name: row for row in rows if row._mapping[_AT_PREFIX + "oid"] is not None}
        for ref_name in names:
            if ref_name in found:
                return repo, _commit_from_row(found[ref_name], _AT_PREFIX)
        return repo, self.resolve(repo, revision)  # a short commit id, or the RevisionNotFound to raise

    def move_repo(
        self, principal: Principal | None, repo_type: str, source: tuple[str, str], target: tuple[str, str]
    ) -> Repo:
        """Rename or transfer a repo (admin right on it, create right in the target namespace). The old id
        keeps answering for downloads and API calls until a new repo takes it; 409 when the target exists."""
        check_repo_type(repo_type)
        namespace, name = check_repo_segment(target[0], "namespace"), check_new_repo_name(target[1])
        repo = self.get_repo(principal, repo_type, *source, Action.ADMIN)
        require_create_in(principal, namespace, f"{namespace}/{name}")
        with transaction(self._engine) as conn:
            _check_namespace_exists(conn, namespace)
            _delete_redirect(conn, repo_type, namespace, name)
            try:
                conn.execute(
                    sa.update(tables.repos)
                    .where(tables.repos.c.id == repo.id)
                    .values(namespace=namespace, name=name, updated_at=utcnow())
                )
            except sa.exc.IntegrityError:
                raise RepoExists(f"a {repo_type} repo {namespace}/{name} already exists") from None
            if (namespace.lower(), name.lower()) != (repo.namespace.lower(), repo.name.lower()):
                _delete_redirect(conn, repo_type, repo.namespace, repo.name)
                conn.execute(
                    sa.insert(tables.repo_redirects).values(
                        type=repo_type,
                        namespace=repo.namespace,
                        name=repo.name,
                        repo_id=repo.id,
                        created_at=utcnow(),
                    )
                )
            row = conn.execute(sa.select(tables.repos).where(tables.repos.c.id == repo.id)).one()
            audit.record(conn, principal, "repo.move", repo.repo_id, to=f"{namespace}/{name}")
        return _repo_from_row(row)

    def repo_by_id(self, repo_id: int) -> Repo:
        """A repo by its database id, for grants that name one (signed URLs); the caller checks rights."""
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(tables.repos).where(tables.repos.c.id == repo_id)).first()
        if row is None:
            raise RepoNotFound("the repo of this grant no longer exists")
        return _repo_from_row(row)

    def delete_repo(self, principal: Principal | None, repo_type: str, namespace: str, name: str) -> None:
        repo = self.get_repo(principal, repo_type, namespace, name, Action.ADMIN)
        with transaction(self._engine) as conn:
            _delete_repo_rows(conn, repo.id)
            audit.record(conn, principal, "repo.delete", repo.repo_id)

    def update_settings(
        self,
        principal: Principal | None,
        repo: Repo,
        private: bool | None,
        gated: str | bool | None = None,
        scan_policy: str | None = None,
    ) -> Repo:
        """Change visibility, gating (`gated` is "auto", "manual", or False to open the repo) and what happens
        to unsafe files (`scan_policy`: refuse, quarantine, warn, or "hub" to follow the hub's setting)."""
        require(principal, Action.ADMIN, repo.ref)
        values: dict[str, object] = {}
        if scan_policy is not None:
            if scan_policy not in (*POLICIES, "hub"):
                raise BadRequest(f"scanPolicy must be one of {', '.join(POLICIES)} or 'hub'")
            values["scan_policy"] = None if scan_policy == "hub" else scan_policy
        if private is not None:
            values["private"] = private
        if gated is not None:
            if gated not in ("auto", "manual", False):
                raise BadRequest(f"gated must be 'auto', 'manual' or false, not {gated!r}")
            values["gated"] = gated or None
        if not values:
            return repo
        with transaction(self._engine) as conn:
            conn.execute(
                sa.update(tables.repos)
                .where(tables.repos.c.id == repo.id)
                .values(updated_at=utcnow(), **values)
            )
            row = conn.execute(sa.select(tables.repos).where(tables.repos.c.id == repo.id)).one()
            audit.record(conn, principal, "repo.settings", repo.repo_id, **values)
        return _repo_from_row(row)

    def list_repos(
        self,
        principal: Principal | None,
        repo_type: str,
        search: str | None = None,
        author: str | None = None,
        sort: str = "lastModified",
        descending: bool = True,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Repo]:
        """Repos `principal` may read, filtered and sorted as the Hub's listing endpoints do."""
        repos = tables.repos
        query = sa.select(repos).where(repos.c.type == repo_type)
        if principal is None:
            query = query.where(repos.c.private.is_(False))
        elif not principal.is_admin:
            visible = [principal.name, *principal.orgs]
            query = query.where(sa.or_(repos.c.private.is_(False), repos.c.namespace.in_(visible)))
        if search:
            pattern = "%" + search.lower().replace("%", r"\%").replace("_", r"\_") + "%"
            full_id = sa.func.lower(repos.c.namespace + "/" + repos.c.name)
            query = query.where(full_id.like(pattern, escape="\\"))
        if author:
            query = query.where(repos.c.namespace == author)
        column = {
            "lastModified": repos.c.updated_at,
            "last_modified": repos.c.updated_at,
            "createdAt": repos.c.created_at,
            "created_at": repos.c.created_at,
            "downloads": repos.c.downloads,
            "id": repos.c.namespace + "/" + repos.c.name,
        }.get(sort)
        if column is None:
            raise BadRequest(f"cannot sort by {sort!r}; use lastModified, createdAt, downloads or id")
        order = column.desc() if descending else column.asc()
        query = query.order_by(order, repos.c.id.desc())
        with self._engine.connect() as conn:
            rows = [_repo_from_row(row) for row in conn.execute(query)]
        # The SQL filter is coarse; the one permission check has the last word (token targets, roles).
        readable = [repo for repo in rows if can(principal, Action.READ, repo.ref)]
        return readable[offset : offset + limit]

    def count_download(self, repo: Repo) -> None:
        """Count one download of the repo; it reaches the repo's total within a second (`DownloadCounter`)."""
        self.downloads.count(repo.id)

    # ------------------------------------------------------------------ revisions

    def resolve(self, repo: Repo, revision: str) -> Commit:
        """The commit a branch, tag, `refs/pr/N` or 40-hex commit id names."""
        with self._engine.connect() as conn:
            return self._resolve(conn, repo, revision)

    def _resolve(self, conn: sa.Connection, repo: Repo, revision: str) -> Commit:
        if COMMIT_OID_RE.match(revision):
            commit = self._commit(conn, repo, revision)
            if commit is not None:
                return commit
        names = _ref_names(revision)
        # The ref and its commit in one query (every request resolves a revision); a branch wins over a tag.
        found = {
            row.ref_name: row
            for row in conn.execute(_REFS_WITH_COMMITS, {"repo_id": repo.id, "names": names})
        }
        for name in names:
            if name in found:
                return _commit_from_row(found[name])
        if SHORT_OID_RE.match(revision):
            # An abbreviated commit id, as git accepts one: 7 or more hex digits naming exactly one commit.
            rows = conn.execute(
                sa.select(tables.commits)
                .where(tables.commits.c.repo_id == repo.id, tables.commits.c.oid.startswith(revision))
                .limit(2)
            ).all()
            if len(rows) == 1:
                return _commit_from_row(rows[0])
        raise RevisionNotFound(f"Invalid rev id: {revision}")

    def _commit(self, conn: sa.Connection, repo: Repo, oid: str) -> Commit | None:
        row = conn.execute(
            sa.select(tables.commits).where(tables.commits.c.repo_id == repo.id, tables.commits.c.oid == oid)
        ).first()
        return _commit_from_row(row) if row else None

    def _children(self, conn: sa.Connection | None, oid: str) -> dict[str, FileEntry | DirEntry]:
        """The entries of tree object `oid`: from the cache, or read on `conn` (None: a connection of its own,
        taken only then, as tree objects never change; a read that walks cached trees takes none)."""
        cached = self._trees.get(oid)
        if cached is not None:
            return cached
        if conn is None:
            with self._engine.connect() as own:
                return self._children(own, oid)
        body = conn.execute(_TREE_BODY, {"oid": oid}).scalar()
        if body is None:
            raise RuntimeError(f"tree object {oid} is missing from the database")
        children = parse_tree_body(body)
        self._trees.put(oid, children)
        return children

    def _walk(self, conn: sa.Connection | None, oid: str, prefix: str, recursive: bool) -> Iterator[TreeItem]:
        for name, entry in sorted(self._children(conn, oid).items()):
            path = f"{prefix}{name}"
            yield TreeItem(path, entry)
            if recursive and isinstance(entry, DirEntry):
                yield from self._walk(conn, entry.oid, path + "/", recursive)

    def files(self, commit: Commit) -> dict[str, FileEntry]:
        """Every file of a commit, by path."""
        return self._files(None, commit.tree_oid)

    def _files(self, conn: sa.Connection | None, tree_oid: str) -> dict[str, FileEntry]:
        return {
            item.path: item.entry
            for item in self._walk(conn, tree_oid, "", recursive=True)
            if isinstance(item.entry, FileEntry)
        }

    def tree(
        self,
        commit: Commit,
        path: str = "",
        recursive: bool = False,
        start: int = 0,
        limit: int | None = None,
    ) -> list[TreeItem]:
        """The entries under `path` (the root when empty), in listing order; `EntryNotFound` when it is not a
        folder. With `limit`, at most `limit` entries from the `start`-th on: the walk stops there, so a page
        costs what the entries before its end cost, not the whole tree."""
        stop = None if limit is None else start + limit
        oid = commit.tree_oid
        prefix = ""
        if path:
            check_folder(path)
            path = path.rstrip("/")
            for segment in path.split("/"):
                entry = self._children(None, oid).get(segment)
                if not isinstance(entry, DirEntry):
                    raise EntryNotFound(f"{path} does not exist at {commit.oid}", commit=commit.oid)
                oid = entry.oid
            prefix = path + "/"
        return list(itertools.islice(self._walk(None, oid, prefix, recursive), start, stop))

    def entries(self, commit: Commit, paths: Sequence[str]) -> list[TreeItem]:
        """The file or folder at each of `paths` that exists at `commit`, in the order asked; the others are
        left out. Reads only the folders on the way to each."""
        found = []
        for path in paths:
            *folders, name = path.split("/")
            children: dict[str, FileEntry | DirEntry] | None = self._children(None, commit.tree_oid)
            for segment in folders:
                child = children.get(segment) if children is not None else None
                children = self._children(None, child.oid) if isinstance(child, DirEntry) else None
            entry = children.get(name) if children is not None else None
            if entry is not None:
                found.append(TreeItem(path, entry))
        return found

    def file(self, commit: Commit, path: str) -> FileEntry:
        check_path(path)
        oid = commit.tree_oid
        *folders, name = path.split("/")
        for segment in folders:
            child = self._children(None, oid).get(segment)
            if not isinstance(child, DirEntry):
                raise EntryNotFound(f"{path} does not exist at {commit.oid}", commit=commit.oid)
            oid = child.oid
        entry = self._children(None, oid).get(name)
        if not isinstance(entry, FileEntry):
            raise EntryNotFound(f"{path} does not exist at {commit.oid}", commit=commit.oid)
        return entry

    def history(self, repo: Repo, revision: str, start: int = 0, limit: int | None = None) -> list[Commit]:
        """Commits reachable from `revision`, newest first; with `limit`, at most `limit` of them from the
        `start`-th on. One query that follows the parents from the head and stops at the page's end."""
        commits = tables.commits
        with self._engine.connect() as conn:
            head = self._resolve(conn, repo, revision)
            chain = (
                sa.select(commits.c.oid, commits.c.parent_oid, sa.literal(0).label("depth"))
                .where(commits.c.repo_id == repo.id, commits.c.oid == head.oid)
                .cte("chain", recursive=True)
            )
            step = sa.select(commits.c.oid, commits.c.parent_oid, chain.c.depth + 1).where(
                commits.c.repo_id == repo.id, commits.c.oid == chain.c.parent_oid
            )
            if limit is not None:
                step = step.where(chain.c.depth + 1 < start + limit)
            chain = chain.union_all(step)
            page = (
                sa.select(commits)
                .join(chain, sa.and_(commits.c.repo_id == repo.id, commits.c.oid == chain.c.oid))
                .where(chain.c.depth >= start)
                .order_by(chain.c.depth)
            )
            return [_commit_from_row(row) for row in conn.execute(page)]

    def history_length(self, repo: Repo, revision: str) -> int:
        """How many commits are reachable from `revision` (counted in the database)."""
        commits = tables.commits
        with self._engine.connect() as conn:
            head = self._resolve(conn, repo, revision)
            chain = (
                sa.select(commits.c.oid, commits.c.parent_oid)
                .where(commits.c.repo_id == repo.id, commits.c.oid == head.oid)
                .cte("chain", recursive=True)
            )
            chain = chain.union_all(
                sa.select(commits.c.oid, commits.c.parent_oid).where(
                    commits.c.repo_id == repo.id, commits.c.oid == chain.c.parent_oid
                )
            )
            return int(conn.execute(sa.select(sa.func.count()).select_from(chain)).scalar_one())

    # ------------------------------------------------------------------ refs

    def refs(self, repo: Repo) -> list[Ref]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(tables.refs).where(tables.refs.c.repo_id == repo.id).order_by(tables.refs.c.name)
            )
            return [Ref(row.name, row.target_oid, row.message) for row in rows]

    def create_branch(
        self, principal: Principal | None, repo: Repo, branch: str, starting_point: str | None
    ) -> Ref:
        require(principal, Action.WRITE, repo.ref)
        check_ref_name(branch)
        return self._create_ref(principal, repo, HEADS + branch, starting_point or DEFAULT_BRANCH, None)

    def create_tag(
        self, principal: Principal | None, repo: Repo, tag: str, revision: str, message: str | None
    ) -> Ref:
        require(principal, Action.WRITE, repo.ref)
        self.resolve(repo, revision)  # as on the Hub, a missing revision is reported before a bad tag name
        check_ref_name(tag)
        return self._create_ref(principal, repo, TAGS + tag, revision, message)

    def _create_ref(
        self, principal: Principal | None, repo: Repo, name: str, revision: str, message: str | None
    ) -> Ref:
        with transaction(self._engine) as conn:
            target = self._resolve(conn, repo, revision)
            row: dict[str, object] = {
                "repo_id": repo.id,
                "name": name,
                "target_oid": target.oid,
                "message": message,
                "created_at": utcnow(),
            }
            if not insert_ignore(conn, tables.refs, [row]):
                raise RefExists(f"Reference {name} already exists")
            audit.record(conn, principal, "ref.create", repo.repo_id, ref=name, target=target.oid)
        return Ref(name, target.oid, message)

    def delete_branch(self, principal: Principal | None, repo: Repo, branch: str) -> None:
        require(principal, Action.WRITE, repo.ref)
        if branch == DEFAULT_BRANCH:
            raise BadRequest(f"Cannot delete {HEADS}{DEFAULT_BRANCH}")
        self._delete_ref(principal, repo, HEADS + branch)

    def delete_tag(self, principal: Principal | None, repo: Repo, tag: str) -> None:
        require(principal, Action.WRITE, repo.ref)
        self._delete_ref(principal, repo, TAGS + tag)

    def _delete_ref(self, principal: Principal | None, repo: Repo, name: str) -> None:
        with transaction(self._engine) as conn:
            result = conn.execute(
                sa.delete(tables.refs).where(tables.refs.c.repo_id == repo.id, tables.refs.c.name == name)
            )
            if result.rowcount == 0:
                raise RevisionNotFound(f"Invalid rev id: {name}")
            audit.record(conn, principal, "ref.delete", repo.repo_id, ref=name)

    # ------------------------------------------------------------------ content

    @property
    def lfs_threshold(self) -> int:
        return self._settings.lfs_threshold

    def head_bytes(self, entry: FileEntry, limit: int) -> bytes:
        """The first `limit` bytes of a file (a rules file: small, and bounded whatever its size)."""
        return b"".join(self._store.iter_range(entry.sha256, 0, min(entry.size, limit), limit))

    def lfs_rules(self, files: dict[str, FileEntry]) -> LfsRules:
        """The LFS rules of the `.gitattributes` among `files` (none without one)."""
        entry = files.get(GITATTRIBUTES)
        return LfsRules.parse(self.head_bytes(entry, MAX_RULES_BYTES)) if entry else LfsRules()

    def start_ingest(self, budget: ByteBudget | None = None) -> ContentIngest:
        """A sink for file content of unknown length (a commit body); see `ContentIngest`. Each byte is
        taken from `budget` (the repo's quota) before it is stored."""
        return ContentIngest(self._store, self._settings.lfs_threshold, budget)

    def record_content(self, principal: Principal, content: IngestedContent) -> AddFile:
        """Register ingested content and turn it into the `AddFile` operation of a path to be named later."""
        self.record_blob(principal, content.blob, content.git_sha1)
        lfs = content.blob.size >= self._settings.lfs_threshold or looks_binary(content.sample)
        return AddFile(path="", sha256=content.blob.sha256, size=content.blob.size, lfs=lfs)

    def renew_uploads(self, shas: Sequence[str]) -> None:
        """Count content that a client was told is stored already (so it uploads nothing) as uploaded now:
        `weightyard gc` then spares it as it spares a fresh upload, until the client's commit names it."""
        if not shas:
            return
        with transaction(self._engine) as conn:
            conn.execute(
                sa.update(tables.blobs)
                .where(tables.blobs.c.sha256.in_(sorted(set(shas))))
                .values(created_at=utcnow())
            )

    def record_blob(self, principal: Principal, blob: BlobInfo, git_sha1: str | None = None) -> None:
        """Note that a blob is stored and that `principal` proved possession of it by uploading it."""
        now = utcnow()
        with transaction(self._engine) as conn:
            row = conn.execute(
                sa.select(tables.blobs.c.git_sha1).where(tables.blobs.c.sha256 == blob.sha256)
            ).first()
            if row is None:
                conn.execute(
                    sa.insert(tables.blobs).values(
                        sha256=blob.sha256, size=blob.size, git_sha1=git_sha1, created_at=now
                    )
                )
            else:
                # `created_at` counts from the latest upload: gc spares content uploaded recently.
                values: dict[str, object] = {"created_at": now}
                if row.git_sha1 is None and git_sha1 is not None:
                    values["git_sha1"] = git_sha1
                conn.execute(
                    sa.update(tables.blobs).where(tables.blobs.c.sha256 == blob.sha256).values(**values)
                )
            grant: dict[str, object] = {
                "user_id": principal.user_id,
                "sha256": blob.sha256,
                "created_at": now,
            }
            insert_ignore(conn, tables.blob_grants, [grant])

    def referenced_content(self, after: int = 0, heads_only: bool = False) -> tuple[set[str], int]:
        """The sha256 of every file of every commit whose row id is above `after` (with `heads_only`, of the
        commits a branch, tag or pull request names), and the highest commit row id seen: the content
        garbage collection keeps. Each tree is read once, however many commits (and repos) share it."""
        commits = tables.commits
        query = sa.select(commits.c.id, commits.c.tree_oid).where(commits.c.id > after)
        if heads_only:
            query = query.join(
                tables.refs,
                sa.and_(
                    tables.refs.c.repo_id == commits.c.repo_id, tables.refs.c.target_oid == commits.c.oid
                ),
            )
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
            digests: set[str] = set()
            seen: set[str] = set()
            pending = [row.tree_oid for row in rows]
            while pending:
                oid = pending.pop()
                if oid in seen:
                    continue
                seen.add(oid)
                for entry in self._children(conn, oid).values():
                    if isinstance(entry, DirEntry):
                        pending.append(entry.oid)
                    else:
                        digests.add(entry.sha256)
        return digests, max((int(row.id) for row in rows), default=after)

    def blob_git_sha1(self, sha256: str) -> str | None:
        with self._engine.connect() as conn:
            value = conn.execute(
                sa.select(tables.blobs.c.git_sha1).where(tables.blobs.c.sha256 == sha256)
            ).scalar()
        return str(value) if value else None

    def blob_size(self, sha256: str) -> int | None:
        with self._engine.connect() as conn:
            value = conn.execute(
                sa.select(tables.blobs.c.size).where(tables.blobs.c.sha256 == sha256)
            ).scalar()
        return int(value) if value is not None else None

    # ------------------------------------------------------------------ commits

    def commit(
        self,
        principal: Principal | None,
        repo: Repo,
        revision: str,
        operations: Sequence[Operation],
        title: str,
        description: str = "",
        parent_commit: str | None = None,
        create_pr: bool = False,
    ) -> CommitResult:
        """Apply `operations` atomically on top of the branch head: every operation is visible at the new
        commit, or none is. With `parent_commit`, a head that has moved on is a `ParentCommitMismatch`;
        without it, concurrent commits are applied one after the other."""
        require(principal, Action.WRITE, repo.ref)
        assert principal is not None
        if not title.strip():
            raise BadRequest("a commit needs a summary")
        if parent_commit is not None and not COMMIT_OID_RE.match(parent_commit):
            raise BadRequest(f"parentCommit must be a 40-hex commit id, got {parent_commit[:80]!r}")
        for operation in operations:
            if isinstance(operation, DeleteFolder):
                check_folder(operation.path)
            else:
                check_path(operation.path)
        self._scan_gate(repo, revision, operations)
        added = [operation for operation in operations if isinstance(operation, AddFile)]
        for prepare in self.before_commit:
            prepare(added)
        for _ in range(_COMMIT_ATTEMPTS):
            prebuilt = self._prebuild(repo, revision, operations, create_pr)
            try:
                result = self._try_commit(
                    principal,
                    repo,
                    revision,
                    operations,
                    title,
                    description,
                    parent_commit,
                    create_pr,
                    prebuilt,
                )
            except _HeadMoved:
                if parent_commit is not None:
                    raise ParentCommitMismatch() from None
                continue
            crash_point("commit.landed")
            for hook in self.after_commit:
                hook(repo, result.commit)
            return result
        raise RuntimeError("could not apply the commit: the branch kept moving")

    def scan_policy(self, repo: Repo) -> str:
        return self.gate.policy(repo)

    def _scan_gate(self, repo: Repo, revision: str, operations: Sequence[Operation]) -> None:
        """Wait for the scans of every added file (outside the commit's transaction: scans take time; a scan
        still running after `scan_wait` seconds is a retryable `ScanPending`), and refuse the commit when the
        policy is "refuse" and a file it adds is unsafe, alone or in its folder's context."""
        added = {op.path: op for op in operations if isinstance(op, AddFile)}
        self.scans.await_scans({path: add.sha256 for path, add in added.items()}, self._settings.scan_wait)
        if not added or self.scan_policy(repo) != "refuse":
            return
        try:
            files = dict(self.files(self.resolve(repo, revision)))
        except RevisionNotFound:
            return  # the commit itself reports the missing revision
        for operation in operations:
            if isinstance(operation, AddFile):
                files[operation.path] = FileEntry(operation.sha256, operation.size, operation.lfs, "")
            elif isinstance(operation, DeleteFile):
                files.pop(operation.path, None)
            else:
                prefix = operation.path.rstrip("/") + "/"
                files = {path: entry for path, entry in files.items() if not path.startswith(prefix)}
        reports = self.scans.reports(files)
        unsafe = [reports[path] for path in added if reports[path].verdict is Verdict.UNSAFE]
        if unsafe:
            names = ", ".join(report.name for report in unsafe)
            raise UnsafeFile(
                f"refused: the scanner found {names} unsafe; nothing was committed",
                findings=[
                    {"path": report.name, **finding.to_dict()}
                    for report in unsafe
                    for finding in report.findings
                ],
            )

    def _prebuild(
        self, repo: Repo, revision: str, operations: Sequence[Operation], create_pr: bool
    ) -> _NewTree | None:
        """The commit's tree built on the head as it stands now, before the write transaction: reading every
        tree of a large repo and hashing the new ones is work no other writer should wait for. None when the
        head cannot take the operations: the transaction builds again on the head it holds and reports the
        error against that head, which may have moved on since."""
        try:
            with self._engine.connect() as conn:
                base, _ = self._commit_base(conn, repo, revision, create_pr)
                return self._build_tree(conn, base, operations)
        except WeightyardError:
            return None

    def _commit_base(
        self, conn: sa.Connection, repo: Repo, revision: str, create_pr: bool
    ) -> tuple[Commit, str | None]:
        """The commit a new commit goes on top of, and the ref it moves (None for a new pull request)."""
        if create_pr:
            return self._resolve(conn, repo, revision), None
        ref_name = revision if revision.startswith(PULLS) else HEADS + revision
        target = conn.execute(
            sa.select(tables.refs.c.target_oid).where(
                tables.refs.c.repo_id == repo.id, tables.refs.c.name == ref_name
            )
        ).scalar()
        if target is None:
            raise RevisionNotFound(f"Invalid rev id: {revision}")
        base = self._commit(conn, repo, target)
        assert base is not None
        return base, ref_name

    def _build_tree(self, conn: sa.Connection, base: Commit, operations: Sequence[Operation]) -> _NewTree:
        files = self._files(conn, base.tree_oid)
        before = dict(files)
        self._apply(conn, files, operations, base.oid)
        self._mark_lfs(files, operations)
        self._check_sizes(files, operations)
        root, objects = build_trees(files)
        return _NewTree(base, before, files, root, objects)

    def _try_commit(
        self,
        principal: Principal,
        repo: Repo,
        revision: str,
        operations: Sequence[Operation],
        title: str,
        description: str,
        parent_commit: str | None,
        create_pr: bool,
        prebuilt: _NewTree | None,
    ) -> CommitResult:
        now = utcnow()
        with transaction(self._engine) as conn:
            # The head, the parentCommit check and the content check are read under the write lock; the tree
            # built beforehand is used only if it was built on this very head.
            base, ref_name = self._commit_base(conn, repo, revision, create_pr)
            if parent_commit is not None and parent_commit != base.oid:
                raise ParentCommitMismatch(parentCommit=parent_commit, head=base.oid)
            self._check_content_recorded(conn, operations)
            if prebuilt is not None and prebuilt.base.oid == base.oid:
                tree = prebuilt
            else:
                tree = self._build_tree(conn, base, operations)
            files, root = tree.files, tree.root
            self._store_trees(conn, tree.objects)
            self._index_contents(conn, repo.id, (op.sha256 for op in operations if isinstance(op, AddFile)))
            oid = commit_object_id(root, base.oid, principal.name, int(now.timestamp()), title, description)
            # the same commit object may exist already (same tree, parent, author, second and message)
            insert_ignore(
                conn,
                tables.commits,
                [
                    {
                        "repo_id": repo.id,
                        "oid": oid,
                        "parent_oid": base.oid,
                        "tree_oid": root,
                        "title": title,
                        "message": description,
                        "author": principal.name,
                        "created_at": now,
                    }
                ],
            )
            last_commit_index.record(conn, repo.id, oid, base.oid, tree.before, files)
            pull_request = None
            if ref_name is None:
                pull_request = self._open_pull_request(conn, repo, oid, now)
                ref_name = f"{PULLS}{pull_request}"
            elif not _move_ref(conn, repo.id, ref_name, base.oid, oid):
                raise _HeadMoved
            conn.execute(sa.update(tables.repos).where(tables.repos.c.id == repo.id).values(updated_at=now))
            audit.record(
                conn,
                principal,
                "repo.commit",
                repo.repo_id,
                ref=ref_name,
                commit=oid,
                parent=base.oid,
                title=title,
                operations=len(operations),
            )
            commit = self._commit(conn, repo, oid)
            assert commit is not None
            for hook in self.in_commit:
                hook(conn, repo, commit, files)
        return CommitResult(commit=commit, ref=ref_name, pull_request=pull_request)

    def last_commits(self, repo: Repo, commit: Commit, paths: Sequence[str]) -> dict[str, Commit]:
        """The newest commit that changed each path (for a folder: anything under it) up to `commit`, from
        the index kept at commit time; paths the index does not know are left out."""
        with self._engine.connect() as conn:
            lasts = last_commit_index.lookup(conn, repo.id, commit.oid, paths)
            rows = conn.execute(
                sa.select(tables.commits).where(
                    tables.commits.c.repo_id == repo.id, tables.commits.c.oid.in_(sorted(set(lasts.values())))
                )
            )
            by_oid = {row.oid: _commit_from_row(row) for row in rows}
        return {path: by_oid[oid] for path, oid in lasts.items() if oid in by_oid}

    def lfs_files(self, repo: Repo) -> list[LfsFile]:
        """Every LFS file any commit of the repo names (and not deleted for good), once per content, with
        its path in the newest commit that has it. Each tree object is read once, however many commits share
        it."""
        with self._engine.connect() as conn:
            trees = conn.execute(
                sa.select(tables.commits.c.tree_oid)
                .where(tables.commits.c.repo_id == repo.id)
                .order_by(tables.commits.c.created_at.desc(), tables.commits.c.id.desc())
            ).scalars()
            found: dict[str, tuple[str, FileEntry]] = {}
            seen: set[str] = set()
            for tree_oid in trees:
                self._collect_lfs(conn, tree_oid, "", seen, found)
            # content deleted for good (`delete_lfs_files`) has left the repo's content index
            rc = tables.repo_contents
            held = set(conn.execute(sa.select(rc.c.sha256).where(rc.c.repo_id == repo.id)).scalars())
            found = {sha256: item for sha256, item in found.items() if sha256 in held}
            pushed = dict(
                conn.execute(
                    sa.select(tables.blobs.c.sha256, tables.blobs.c.created_at).where(
                        tables.blobs.c.sha256.in_(list(found))
                    )
                ).all()
            )
        return [
            LfsFile(sha256, path, entry.git_oid, entry.size, pushed.get(sha256, repo.created_at))
            for sha256, (path, entry) in found.items()
        ]

    def _collect_lfs(
        self,
        conn: sa.Connection,
        oid: str,
        prefix: str,
        seen: set[str],
        found: dict[str, tuple[str, FileEntry]],
    ) -> None:
        if oid in seen:
            return
        seen.add(oid)
        for name, entry in sorted(self._children(conn, oid).items()):
            if isinstance(entry, DirEntry):
                self._collect_lfs(conn, entry.oid, f"{prefix}{name}/", seen, found)
            elif entry.lfs and entry.sha256 not in found:
                found[entry.sha256] = (prefix + name, entry)

    def delete_lfs_files(self, principal: Principal | None, repo: Repo, shas: Sequence[str]) -> int:
        """Permanently delete LFS content of a repo (admin right). Content a branch, tag or pull request
        head still holds is refused (409: delete the file first); commits further back that named it answer
        422 `BlobNotFound` for that file. The bytes go when no other repo holds them. Returns how many
        went."""
        require(principal, Action.ADMIN, repo.ref)
        doomed = set(shas) & {item.sha256 for item in self.lfs_files(repo)}
        if not doomed:
            return 0
        for ref in self.refs(repo):
            for path, entry in self.files(self.resolve(repo, ref.target)).items():
                if entry.sha256 in doomed:
                    raise PathConflict(
                        f"{path} at {ref.short_name} still holds {entry.sha256}; delete it first"
                    )
        rc = tables.repo_contents
        with transaction(self._engine) as conn:
            conn.execute(sa.delete(rc).where(rc.c.repo_id == repo.id, rc.c.sha256.in_(sorted(doomed))))
            held = set(conn.execute(sa.select(rc.c.sha256).where(rc.c.sha256.in_(sorted(doomed)))).scalars())
            unheld = sorted(doomed - held)
            if unheld:
                conn.execute(sa.delete(tables.blob_grants).where(tables.blob_grants.c.sha256.in_(unheld)))
                conn.execute(sa.delete(tables.blobs).where(tables.blobs.c.sha256.in_(unheld)))
            audit.record(conn, principal, "repo.lfs_delete", repo.repo_id, sha256=sorted(doomed))
        for sha256 in unheld:
            self._store.delete(sha256)  # after the rows: a crash in between leaves bytes for gc, never rows
        return len(doomed)

    def squash_branch(self, principal: Principal | None, repo: Repo, branch: str, message: str) -> Commit:
        """Replace a branch's history with one commit holding its head's files (`super_squash_history`).
        Tags and other branches keep the commits they name; the branch moves only if nobody moved it since."""
        require(principal, Action.WRITE, repo.ref)
        assert principal is not None
        title, _, description = message.strip().partition("\n")
        if not title.strip():
            raise BadRequest("a squashed commit needs a message")
        now = utcnow()
        ref_name = HEADS + branch
        with transaction(self._engine) as conn:
            target = conn.execute(
                sa.select(tables.refs.c.target_oid).where(
                    tables.refs.c.repo_id == repo.id, tables.refs.c.name == ref_name
                )
            ).scalar()
            head = self._commit(conn, repo, target) if target is not None else None
            if head is None:
                raise RevisionNotFound(f"Invalid rev id: {branch}")
            oid = commit_object_id(
                head.tree_oid, None, principal.name, int(now.timestamp()), title, description
            )
            insert_ignore(
                conn,
                tables.commits,
                [
                    {
                        "repo_id": repo.id,
                        "oid": oid,
                        "parent_oid": None,
                        "tree_oid": head.tree_oid,
                        "title": title,
                        "message": description,
                        "author": principal.name,
                        "created_at": now,
                    }
                ],
            )
            last_commit_index.record(conn, repo.id, oid, None, {}, self._files(conn, head.tree_oid))
            if not _move_ref(conn, repo.id, ref_name, head.oid, oid):
                raise ParentCommitMismatch(branch=branch)
            conn.execute(sa.update(tables.repos).where(tables.repos.c.id == repo.id).values(updated_at=now))
            audit.record(
                conn, principal, "repo.squash", repo.repo_id, ref=ref_name, commit=oid, replaced=head.oid
            )
            commit = self._commit(conn, repo, oid)
            assert commit is not None
            for record in self.in_commit:
                record(conn, repo, commit, self._files(conn, head.tree_oid))
        for hook in self.after_commit:
            hook(repo, commit)
        return commit

    def _index_contents(self, conn: sa.Connection, repo_id: int, added: Iterable[str]) -> None:
        """Record in the gate's index that the repo now holds this content (the sha256 of each added file);
        every commit that adds files calls it in its own transaction, the repo's first commit included."""
        rows: list[dict[str, object]] = [{"repo_id": repo_id, "sha256": sha} for sha in sorted(set(added))]
        insert_ignore(conn, tables.repo_contents, rows)

    @staticmethod
    def _check_content_recorded(conn: sa.Connection, operations: Sequence[Operation]) -> None:
        # Checked again inside the commit's transaction: `weightyard gc` may have collected content that was
        # uploaded long ago and never committed, between the client's upload check and this commit.
        added = {op.sha256 for op in operations if isinstance(op, AddFile)}
        if not added:
            return
        recorded = set(
            conn.execute(
                sa.select(tables.blobs.c.sha256).where(tables.blobs.c.sha256.in_(sorted(added)))
            ).scalars()
        )
        missing = sorted(added - recorded)
        if missing:
            raise BlobNotFound(f"content {missing[0]} was not uploaded; upload it before committing")

    def _check_sizes(self, files: dict[str, FileEntry], operations: Sequence[Operation]) -> None:
        limit = self._settings.max_file_size
        for operation in operations:
            if isinstance(operation, AddFile) and limit and operation.size > limit:
                raise PayloadTooLarge(f"{operation.path} has {operation.size} bytes; the limit is {limit}")
        repo_limit = self._settings.max_repo_size
        total = sum(entry.size for entry in files.values())
        if repo_limit and total > repo_limit:
            raise PayloadTooLarge(f"the repo would hold {total} bytes; the limit is {repo_limit}")

    def _open_pull_request(self, conn: sa.Connection, repo: Repo, oid: str, now: datetime.datetime) -> int:
        """Create the ref of a new pull request at `oid`; returns its number, the next free one. The refs'
        primary key decides: a number another writer took meanwhile is skipped, never given twice."""
        names = conn.execute(
            sa.select(tables.refs.c.name).where(
                tables.refs.c.repo_id == repo.id, tables.refs.c.name.like("refs/pr/%")
            )
        ).scalars()
        numbers = [int(name[len(PULLS) :]) for name in names if name[len(PULLS) :].isdigit()]
        number = max(numbers, default=0) + 1
        row: dict[str, object] = {"repo_id": repo.id, "target_oid": oid, "created_at": now}
        while not insert_ignore(conn, tables.refs, [{**row, "name": f"{PULLS}{number}"}]):
            number += 1
        return number

    def _apply(
        self, conn: sa.Connection, files: dict[str, FileEntry], operations: Sequence[Operation], base: str
    ) -> None:
        for operation in operations:
            if isinstance(operation, AddFile):
                if operation.lfs:
                    entry = lfs_file_entry(operation.sha256, operation.size)
                else:
                    git_sha1 = conn.execute(
                        sa.select(tables.blobs.c.git_sha1).where(tables.blobs.c.sha256 == operation.sha256)
                    ).scalar()
                    entry = (
                        FileEntry(operation.sha256, operation.size, False, git_sha1)
                        if git_sha1
                        else lfs_file_entry(operation.sha256, operation.size)
                    )
                files[operation.path] = entry
            elif isinstance(operation, DeleteFile) and operation.path in files:
                del files[operation.path]
            else:
                # a `deletedFile` that names a folder deletes the folder, as on the Hub
                prefix = operation.path.rstrip("/") + "/"
                doomed = [path for path in files if path.startswith(prefix)]
                if not doomed:
                    raise EntryNotFound(
                        f"cannot delete folder {operation.path}: not found at {base}", commit=base
                    )
                for path in doomed:
                    del files[path]
        clashes = folders_of(files) & files.keys()
        if clashes:
            raise PathConflict(f"{sorted(clashes)[0]} would be both a file and a folder")

    def _mark_lfs(self, files: dict[str, FileEntry], operations: Sequence[Operation]) -> None:
        """Files this commit adds that a `filter=lfs` rule of the resulting `.gitattributes` names are LFS
        files, however the client sent them (inline, or before it knew of a rule added in this commit)."""
        rules = self.lfs_rules(files)
        if not rules.rules:
            return
        for operation in operations:
            entry = files.get(operation.path) if isinstance(operation, AddFile) else None
            if entry is not None and not entry.lfs and entry.size > 0 and rules.is_lfs(operation.path):
                files[operation.path] = lfs_file_entry(entry.sha256, entry.size)

    def _store_trees(self, conn: sa.Connection, objects: dict[str, str]) -> None:
        insert_ignore(
            conn, tables.tree_objects, [{"oid": oid, "body": body} for oid, body in objects.items()]
        )

    def check_blob(self, principal: Principal, sha256: str, size: int | None) -> int:
        """The size of content a commit names by sha256, after checking the committer may use it."""
        # The gate first, then the size, whatever the answer: the same queries whether or not the content
        # exists, so neither the answer nor its timing tells the committer about content it may not read.
        allowed = self.gate.may_receive(principal, sha256)
        actual = self.blob_size(sha256)
        if not allowed or actual is None or not self._store.exists(sha256):
            raise BlobNotFound(f"content {sha256} was not uploaded; upload it before committing")
        if size is not None and size != actual:
            raise BadRequest(f"content {sha256} has {actual} bytes, not {size}")
        return actual

    def read(self, entry: FileEntry, start: int, end: int, chunk_size: int) -> Iterator[memoryview]:
        """The bytes [start, end) of a file, streamed from the blob store.

        The stored object is checked first, so a file lost or cut short on the server's side is a
        `StoredContentDamaged` error (5xx) before a download sends any header, never a short 200. Content
        with no blob record was removed on purpose (`permanently_delete_lfs_files`): `BlobNotFound` (422).
        """
        self._check_servable(entry)
        return self._store.iter_range(entry.sha256, start, end, chunk_size)

    def download(self, entry: FileEntry, start: int, end: int, chunk_size: int) -> Iterator[memoryview]:
        """`read` for a plain-HTTP download (a `/resolve` GET the gate allowed): content kept only as xorbs
        gets a whole copy written in the background, and serving a copy keeps it (repos/copies.py)."""
        chunks = self.read(entry, start, end, chunk_size)
        if not entry.lfs:
            return chunks
        return self._noted_when_sent(chunks, entry)

    def _noted_when_sent(self, chunks: Iterator[memoryview], entry: FileEntry) -> Iterator[memoryview]:
        # Noted once the response is over (sent, or given up by the client), not when it starts: building the
        # copy rebuilds the same file from its xorbs, and beside the download it would take the cores the
        # download is using.
        try:
            yield from chunks
        finally:
            self.copies.note_download(entry.sha256, entry.size)

    def download_segments(self, entry: FileEntry, start: int, end: int) -> SegmentStream | None:
        """`download` as segments the server sends itself (weightyard.zero_copy); None where the content is
        not in local files (then `download` streams it). The same checks first, the same whole copy noted
        once the response is over."""
        if not self._store.sends_files:
            return None
        self._check_servable(entry)
        stream = self._store.segments(entry.sha256, start, end)
        if stream is None or not entry.lfs:
            return stream
        close = stream.close

        def close_and_note() -> None:
            try:
                close()
            finally:
                self.copies.note_download(entry.sha256, entry.size)

        stream.close = close_and_note
        return stream

    def download_url(self, entry: FileEntry) -> str | None:
        """Where a client fetches an LFS file without the hub (`WEIGHTYARD_BLOB_REDIRECT=presigned`): a
        short-lived presigned URL of its whole blob (a whole copy too), after the checks `read` makes; None to
        stream it (the setting is off, the file is not LFS, the store cannot sign, or the content is kept
        as xorbs)."""
        if self._settings.blob_redirect != "presigned" or not entry.lfs:
            return None
        self._check_servable(entry)
        url = self._store.presign(entry.sha256, PRESIGNED_URL_TTL)
        if url is not None:
            self.copies.note_download(entry.sha256, entry.size)
        return url

    def _check_servable(self, entry: FileEntry) -> None:
        if self.blob_size(entry.sha256) is None:
            raise BlobNotFound(f"content {entry.sha256} of this file was permanently deleted")
        try:
            self._store.check_stored(entry.sha256, entry.size)
        except StoredContentDamaged as exc:
            _log.error("serving refused: %s; run `weightyard fsck`", exc.message)
            raise

    def is_readable(self, principal: Principal | None, repo: Repo) -> bool:
        return can(principal, Action.READ, repo.ref)

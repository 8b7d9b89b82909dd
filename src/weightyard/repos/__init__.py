"""Versioned model repositories: refs, commits and trees; a commit is an atomic ref update."""

from weightyard.repos.access import AccessRequest, AccessRequests
from weightyard.repos.ingest import ContentIngest, IngestedContent
from weightyard.repos.lfs import LfsService, UploadAction
from weightyard.repos.objects import DirEntry, FileEntry, lfs_pointer
from weightyard.repos.service import (
    DEFAULT_BRANCH,
    AddFile,
    Commit,
    CommitResult,
    DeleteFile,
    DeleteFolder,
    LfsFile,
    Operation,
    Ref,
    Repo,
    RepoService,
    TreeItem,
    delete_namespace_repos,
)
from weightyard.validation import (
    COMMIT_OID_RE,
    REPO_TYPES,
    check_path,
    check_ref_name,
    check_repo_id,
    check_repo_segment,
    check_repo_type,
)

__all__ = [
    "COMMIT_OID_RE",
    "DEFAULT_BRANCH",
    "REPO_TYPES",
    "AccessRequest",
    "AccessRequests",
    "AddFile",
    "Commit",
    "CommitResult",
    "ContentIngest",
    "DeleteFile",
    "DeleteFolder",
    "DirEntry",
    "FileEntry",
    "IngestedContent",
    "LfsFile",
    "LfsService",
    "Operation",
    "Ref",
    "Repo",
    "RepoService",
    "TreeItem",
    "UploadAction",
    "check_path",
    "check_ref_name",
    "check_repo_id",
    "check_repo_segment",
    "check_repo_type",
    "delete_namespace_repos",
    "lfs_pointer",
]

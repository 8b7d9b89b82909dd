"""The answer to `preupload`: for each file of a commit being prepared, regular or LFS, ignored or not.

A file goes through LFS (and so through Xet for clients with `hf_xet`) when a `filter=lfs` rule of the
`.gitattributes` names it, when it is at least the LFS threshold, or when its first bytes look binary, as on
the Hub. The rules are those of the revision's `.gitattributes`, followed by the complete lines the client
sent of a `.gitattributes` in the same commit (the client sends only the first 512 bytes of each file; the
commit itself applies the whole new file, see `RepoService.commit`). A file is ignored when the
`.gitignore` sent with the request (`gitIgnore`), or else the revision's, excludes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from weightyard.repos.gitattributes import (
    GITATTRIBUTES,
    GITIGNORE,
    MAX_RULES_BYTES,
    IgnoreRules,
    LfsRules,
    complete_lines,
)
from weightyard.repos.ingest import looks_binary
from weightyard.repos.service import Commit, RepoService


@dataclass(frozen=True)
class UploadCandidate:
    path: str
    size: int
    sample: bytes


@dataclass(frozen=True)
class UploadMode:
    path: str
    lfs: bool
    ignored: bool
    # The current content id of the path, in the form the client compares (sha256 for LFS, git blob id
    # otherwise), so that it can drop a file that did not change.
    oid: str | None


def upload_modes(
    repos: RepoService,
    head: Commit,
    candidates: Sequence[UploadCandidate],
    git_ignore: str | None,
    lfs_capable: bool,
) -> list[UploadMode]:
    """How each candidate is to be uploaded on top of `head`; `lfs_capable` is False for a client that can
    only send content inline (see `Settings.lfs_uploads`), which is then told "regular" for everything."""
    existing = repos.files(head)
    lfs_rules = repos.lfs_rules(existing)
    for candidate in candidates:
        if candidate.path == GITATTRIBUTES:
            lfs_rules = lfs_rules.then(LfsRules.parse(complete_lines(candidate.sample, candidate.size)))
    if git_ignore is not None:
        ignore_rules = IgnoreRules.parse(git_ignore.encode()[:MAX_RULES_BYTES])
    elif GITIGNORE in existing:
        ignore_rules = IgnoreRules.parse(repos.head_bytes(existing[GITIGNORE], MAX_RULES_BYTES))
    else:
        ignore_rules = IgnoreRules()
    threshold = repos.lfs_threshold
    answers = []
    for candidate in candidates:
        lfs = (
            lfs_capable
            and candidate.size > 0
            and (
                candidate.size >= threshold
                or looks_binary(candidate.sample)
                or lfs_rules.is_lfs(candidate.path)
            )
        )
        oid = None
        current = existing.get(candidate.path)
        if current is not None:
            oid = current.sha256 if lfs else repos.blob_git_sha1(current.sha256)
        answers.append(UploadMode(candidate.path, lfs, ignore_rules.is_ignored(candidate.path), oid))
    return answers

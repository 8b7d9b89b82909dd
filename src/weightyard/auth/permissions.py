"""The one place that decides who may do what to a repo or a namespace."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from weightyard.auth.principal import Principal
from weightyard.errors import Forbidden, GatedRepo, RepoNotFound, Unauthorized

_LEVEL = {"read": 1, "write": 2, "admin": 3}
_PAGE_PREFIX = {"dataset": "datasets/", "space": "spaces/"}


class Action(enum.Enum):
    # see that the repo exists: metadata, tree, refs, history
    READ = "read"
    # fetch file contents (differs from READ for gated repos)
    DOWNLOAD = "download"
    WRITE = "write"
    # delete, change settings, handle access requests
    ADMIN = "admin"


@dataclass(frozen=True)
class RepoRef:
    """What the permission check needs to know about a repo."""

    type: str
    namespace: str
    name: str
    private: bool
    gated: str | None = None
    # the id of the user who created the repo: an org's contributors may write to the repos they created
    created_by: int | None = None

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def page_path(self) -> str:
        """The repo's page on the hub, as on the Hugging Face Hub (`/datasets/…` for datasets)."""
        return f"/{_PAGE_PREFIX.get(self.type, '')}{self.id}"


def _token_allows(principal: Principal, namespace: str, repo_id: str | None) -> bool:
    if principal.targets is None:
        return True
    return namespace in principal.targets or (repo_id is not None and repo_id in principal.targets)


def _role_level(principal: Principal, namespace: str, created_by: int | None = None) -> int:
    if principal.is_admin or principal.name == namespace:
        return _LEVEL["admin"]
    role = principal.orgs.get(namespace, "")
    if role == "contributor":
        # As on the Hub: write rights on the repos the member created, read rights on the others.
        mine = created_by is not None and created_by == principal.user_id
        return _LEVEL["write"] if mine else _LEVEL["read"]
    return _LEVEL.get(role, 0)


def access_level(
    principal: Principal | None, namespace: str, repo_id: str | None = None, created_by: int | None = None
) -> int:
    """0 none, 1 read, 2 write, 3 admin: the user's role in the namespace (for a repo created by the user
    `created_by`), capped by the token."""
    if principal is None or not _token_allows(principal, namespace, repo_id):
        return 0
    level = _role_level(principal, namespace, created_by)
    return level if principal.can_write else min(level, _LEVEL["read"])


def namespaces_with(
    principal: Principal | None, action: Action
) -> tuple[frozenset[str], tuple[str, ...] | None]:
    """Where the principal's role allows `action` (READ, WRITE or ADMIN), for checks done in SQL: the
    namespaces ("*" for every one: a site administrator) and the token's targets capping them (None: none).
    The same rule as `access_level`, turned around."""
    if principal is None:
        return frozenset(), None
    needed = _LEVEL[action.value] if action.value in _LEVEL else _LEVEL["read"]
    if needed > _LEVEL["read"] and not principal.can_write:
        return frozenset(), None
    if principal.is_admin:
        return frozenset({"*"}), principal.targets
    orgs = {org for org, role in principal.orgs.items() if _LEVEL.get(role, 0) >= needed}
    return frozenset({principal.name, *orgs}), principal.targets


def can(principal: Principal | None, action: Action, repo: RepoRef, gate_passed: bool = False) -> bool:
    """Whether `principal` (None when anonymous) may perform `action` on `repo`. `gate_passed` says whether
    the principal's access request to a gated repo was accepted.

    Example:
        >>> can(None, Action.READ, RepoRef("model", "alice", "tiny", private=False))
        True
    """
    level = access_level(principal, repo.namespace, repo.id, repo.created_by)
    if action is Action.READ:
        return not repo.private or level >= _LEVEL["read"]
    if action is Action.DOWNLOAD:
        readable = not repo.private or level >= _LEVEL["read"]
        return readable and (repo.gated is None or level >= _LEVEL["read"] or gate_passed)
    # As on the Hub, the write role covers a repo's settings (visibility, gating, access requests) and its
    # deletion; the admin role adds the organisation's members and settings, which are not repo actions.
    return level >= _LEVEL["write"]


def require(principal: Principal | None, action: Action, repo: RepoRef, gate_passed: bool = False) -> None:
    """Raise the error a client should see when `can` says no.

    A repo the principal cannot read is reported as missing (404), so its existence does not leak.
    """
    if can(principal, action, repo, gate_passed):
        return
    if not can(principal, Action.READ, repo):
        raise RepoNotFound(f"Repository {repo.id} not found")
    if action is Action.DOWNLOAD:
        raise GatedRepo(repo.type, repo.id, repo.page_path, anonymous=principal is None)
    if principal is None:
        raise Unauthorized(f"You must be authenticated to {action.value} {repo.id}")
    if not principal.can_write:
        raise Forbidden(f"Token {principal.token_name!r} has read scope; {action.value} needs write scope")
    raise Forbidden(f"{principal.name} may not {action.value} {repo.id}")


def require_token_covers(principal: Principal, repo: RepoRef, what: str) -> None:
    """For what a user does about a repo without any level on it (asking for access): a token limited to
    other repos may not act on this one."""
    if not _token_allows(principal, repo.namespace, repo.id):
        raise Forbidden(f"Token {principal.token_name!r} is not valid for {repo.id}; it may not {what}")


def can_create_in(principal: Principal | None, namespace: str, repo_id: str) -> bool:
    """Whether `principal` may create `repo_id` in `namespace`: its own, or an org where it is a contributor
    or can write."""
    if principal is not None and principal.orgs.get(namespace) == "contributor":
        return access_level(principal, namespace, repo_id, created_by=principal.user_id) >= _LEVEL["write"]
    return access_level(principal, namespace, repo_id) >= _LEVEL["write"]


def require_create_in(principal: Principal | None, namespace: str, repo_id: str) -> None:
    if can_create_in(principal, namespace, repo_id):
        return
    if principal is None:
        raise Unauthorized("You must be authenticated to create a repo")
    if not principal.can_write:
        raise Forbidden(f"Token {principal.token_name!r} has read scope; creating a repo needs write scope")
    raise Forbidden(f"{principal.name} may not create repos in {namespace!r}")


def require_unlimited_token(principal: Principal | None, what: str, write: bool = True) -> Principal:
    """Account-level actions (users, organisations, tokens, keys, the hub's audit log) act outside any one
    repo, so a token limited to some repos may never do them; `write` says whether write scope is needed."""
    if principal is None:
        raise Unauthorized(f"You must be authenticated to {what}")
    if principal.targets is not None:
        raise Forbidden(
            f"Token {principal.token_name!r} is limited to {', '.join(principal.targets)}; "
            f"to {what} use a token without repo limits"
        )
    if write and not principal.can_write:
        raise Forbidden(f"Token {principal.token_name!r} has read scope; to {what} use a write token")
    return principal


def require_org_admin(principal: Principal | None, org: str, what: str) -> None:
    """An organisation's admins (and site administrators) manage it, through an unlimited write token: a
    token limited to some repos administers nothing, not even the organisation those repos are in."""
    checked = require_unlimited_token(principal, what)
    if _role_level(checked, org) < _LEVEL["admin"]:
        raise Forbidden(f"Only an admin of {org!r} or a site administrator may {what}")


def require_site_admin(principal: Principal | None, what: str = "do this", write: bool = True) -> None:
    checked = require_unlimited_token(principal, what, write)
    if not checked.is_admin:
        raise Forbidden(f"Only a site administrator may {what}")


def require_self_or_site_admin(principal: Principal | None, user: str, what: str, write: bool = True) -> None:
    """For what belongs to one user (tokens, signing keys): that user or a site administrator, acting
    through an unlimited token."""
    checked = require_unlimited_token(principal, what, write)
    if not (checked.is_admin or checked.name == user):
        raise Forbidden(f"Only {user} or a site administrator may {what}")
